"""SimCLRv2 step 3: a fine-tuned teacher (from `experiments.finetune`) labels every
training image with soft targets, and a student learns from them; no labels are used.

python -m experiments.distill --teacher_path=runs/finetune --dataset=sample
python -m experiments.distill --teacher_path=runs/finetune --dataset=cifar10 \
    --student_encoder=resnet18 --student_width=0.5

Writes results.json (the student's test accuracy), the figures and student.keras into
--output_dir.
"""

from __future__ import annotations

import json

import keras
from absl import flags

from contrastive_tf import storage
from contrastive_tf.distillation import Distiller
from contrastive_tf.encoders import ENCODERS, build_encoder, is_encoder_name, unknown_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.evaluation import extract_features, labelled_data
from contrastive_tf.finetuning import Classifier, labelled_batches, light_augmentation, predict_scores
from contrastive_tf.optimizers import warmup_cosine
from contrastive_tf.reports import report_classification
from contrastive_tf.run_folder import CLASSIFIER_FILE, RESULTS_FILE, STUDENT_FILE

from . import cli, eval_common


def define_flags(flag_values: flags.FlagValues) -> None:
    eval_common.define_data_flags(flag_values)
    flags.DEFINE_string(
        "teacher_path",
        "runs/finetune",
        "The teacher: a finetune --output_dir, or its classifier.keras.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "student_encoder",
        "same",
        f"The student's encoder: same (the teacher's architecture), {', '.join(ENCODERS)}, an image model of "
        "keras.applications by its name, or module.path:function (as pretrain's --encoder).",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "student_width",
        1.0,
        "Width multiplier (the MobileNets' alpha) of a --student_encoder other than 'same'.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "temperature",
        1.0,
        "Softmax temperature of the teacher's and the student's probabilities.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "output_dir", "runs/distill", "Where results.json, the figures and student.keras go.", flag_values=flag_values
    )
    flags.DEFINE_integer("epochs", 10, "Epochs over the training images.", flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 128, "Batch size.", flag_values=flag_values)
    flags.DEFINE_float("learning_rate", 1e-3, "Peak Adam learning rate (cosine decay to 0).", flag_values=flag_values)


FLAGS = flags.FLAGS


def load_teacher(path: str) -> tuple[Classifier, dict]:
    """The fine-tuned classifier at `path`, and the results.json that came with it."""
    path = storage.location(path)
    model_file = storage.join(path, CLASSIFIER_FILE) if storage.isdir(path) else path
    if not storage.exists(model_file):
        raise UsageError(f"no teacher at {path}; run experiments.finetune first and pass its --output_dir")
    teacher = keras.saving.load_model(model_file, safe_mode=True)
    results_file = storage.join(storage.parent(model_file), RESULTS_FILE)
    return teacher, json.loads(storage.read_text(results_file)) if storage.exists(results_file) else {}


def main(argv: list[str]) -> None:
    if FLAGS.student_encoder != "same" and not is_encoder_name(FLAGS.student_encoder):
        raise UsageError(unknown_encoder(FLAGS.student_encoder))
    teacher, teacher_results = load_teacher(FLAGS.teacher_path)
    image_shape = tuple(teacher.encoder.input_shape[1:])
    data = labelled_data(FLAGS.dataset, FLAGS.data_dir, image_shape, **eval_common.source_options())
    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.student_encoder == "same":
        encoder = keras.models.clone_model(teacher.encoder)
    else:
        encoder = build_encoder(FLAGS.student_encoder, image_shape, FLAGS.student_width)
    student = Classifier(encoder, data.num_classes)
    pool = data.pretrain  # every training image, and the unlabelled split if there is one
    steps = FLAGS.epochs * -(-pool.num_examples // FLAGS.batch_size)
    distiller = Distiller(student, teacher, light_augmentation(image_shape[-1], FLAGS.seed), FLAGS.temperature)
    distiller.compile(optimizer=keras.optimizers.Adam(warmup_cosine(FLAGS.learning_rate, steps, 0)))
    fitted = distiller.fit(
        labelled_batches(pool, FLAGS.batch_size, FLAGS.seed, shuffle=True), epochs=FLAGS.epochs, verbose=2
    )
    scores, test_labels = predict_scores(student, data.test)
    test_features, _ = extract_features(student.encoder, data.test)
    inputs = {
        "evaluation": "distill",
        "dataset": data.name,
        "encoder": student.encoder.name,
        "teacher": teacher.encoder.name,
        "teacher_path": FLAGS.teacher_path,
        "teacher_top1_accuracy": teacher_results.get("top1_accuracy"),
        "label_fraction": teacher_results.get("label_fraction"),
        "num_train": pool.num_examples,
        "num_test": data.test.num_examples,
        "temperature": FLAGS.temperature,
        "epochs": FLAGS.epochs,
    }
    results = report_classification(
        FLAGS.output_dir, inputs, test_labels, scores, test_features, data.class_names, fitted.history
    )
    storage.write_atomically(storage.join(FLAGS.output_dir, STUDENT_FILE), student.save)
    eval_common.print_summary(results, FLAGS.output_dir)


if __name__ == "__main__":
    cli.run(main, define_flags)
