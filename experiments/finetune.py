"""Fine-tune a pretrained encoder on a stratified, seeded fraction of the labels, or
train the same architecture from scratch on them (the supervised baseline).

python -m experiments.finetune --encoder_path=runs/simclr --dataset=sample --label_fraction=0.01
python -m experiments.finetune --encoder_path=runs/simclr --dataset=sample --label_fraction=0.01 --from_scratch

Writes results.json, confusion_matrix.png, embedding.png, training_curves.png and the
fine-tuned classifier.keras into --output_dir.
"""

from __future__ import annotations

import keras
from absl import flags

from contrastive_tf import storage
from contrastive_tf.errors import UsageError
from contrastive_tf.evaluation import extract_features
from contrastive_tf.finetuning import FINE_TUNING_CROP_SCALE, Classifier, fine_tune, light_augmentation
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.reports import report_classification
from contrastive_tf.run_folder import CLASSIFIER_FILE, MODEL_FILE

from . import cli, eval_common


def define_flags(flag_values: flags.FlagValues) -> None:
    eval_common.define_data_flags(flag_values)
    flags.DEFINE_string(
        "output_dir",
        "runs/finetune",
        "Where results.json, the figures and classifier.keras go.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("epochs", 30, "Training epochs over the labelled subset.", flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 64, "Batch size.", flag_values=flag_values)
    flags.DEFINE_float("learning_rate", 1e-3, "Peak Adam learning rate (cosine decay to 0).", flag_values=flag_values)
    flags.DEFINE_integer(
        "head_layers",
        0,
        "Keep this many projection-head layers below the classifier (SimCLRv2 fine-tunes from 1).",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "crop_scale_min",
        FINE_TUNING_CROP_SCALE[0],
        "Smallest random-crop area fraction of the labelled images (SimCLR's fine-tuning: 0.08).",
        lower_bound=0.0,
        upper_bound=1.0,
        flag_values=flag_values,
    )
    flags.DEFINE_boolean(
        "from_scratch", False, "Train the same architecture from random weights: the baseline.", flag_values=flag_values
    )
    eval_common.define_encoder_flags(flag_values)


FLAGS = flags.FLAGS


def build_classifier(pretrained, num_classes: int) -> Classifier:
    """The classifier on the pretrained encoder (and head layers), or on fresh copies of
    them with `--from_scratch`."""
    if pretrained.model is None:
        raise UsageError(
            f"fine-tuning needs the whole trainable model: pass the pretraining --model_dir (with {MODEL_FILE}), "
            "not its export, which holds the encoder alone (docs/export.md shows an app fine-tuning it)"
        )
    encoder, head = pretrained.model.encoder, pretrained.model.projection_head
    if not 0 <= FLAGS.head_layers < head.num_layers:
        raise UsageError(f"head_layers must be in [0, {head.num_layers - 1}] for this {head.num_layers}-layer head")
    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.from_scratch:
        encoder, head = keras.models.clone_model(encoder), ProjectionHead.from_config(head.get_config())
    # Flip as pretraining did: a flipped digit is another symbol, so grayscale defaults to none.
    flip = getattr(pretrained.model.augmenter, "flip_setting", None)
    augmenter = light_augmentation(
        pretrained.image_shape[-1], FLAGS.seed, flip=flip, crop_scale=(FLAGS.crop_scale_min, 1.0)
    )
    return Classifier(encoder, num_classes, augmenter, head if FLAGS.head_layers else None, FLAGS.head_layers)


def main(argv: list[str]) -> None:
    pretrained, data = eval_common.load_inputs()
    model = build_classifier(pretrained, data.num_classes)
    result = fine_tune(
        model, data.train, data.test, FLAGS.epochs, FLAGS.batch_size, FLAGS.learning_rate, FLAGS.seed, verbose=2
    )
    test_features, test_labels = extract_features(model.encoder, data.test)
    inputs = {
        "evaluation": "from_scratch" if FLAGS.from_scratch else "finetune",
        **eval_common.describe(pretrained, data),
        "epochs": FLAGS.epochs,
        "head_layers": FLAGS.head_layers,
        "crop_scale_min": FLAGS.crop_scale_min,
    }
    results = report_classification(
        FLAGS.output_dir, inputs, test_labels, result.test_scores, test_features, data.class_names, result.history
    )
    storage.write_atomically(storage.join(FLAGS.output_dir, CLASSIFIER_FILE), model.save)
    eval_common.print_summary(results, FLAGS.output_dir)


if __name__ == "__main__":
    cli.run(main, define_flags)
