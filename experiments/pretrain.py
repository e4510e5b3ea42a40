"""Pretrain an encoder (SimCLR, MoCo, BYOL, SimSiam or SupCon), probe it, and export it
as a SavedModel.

python -m experiments.pretrain                       # embedded MNIST sample, ~2 min on a CPU
python -m experiments.pretrain --method=byol
python -m experiments.pretrain --dataset=cifar10 --strategy=mirrored
python -m experiments.pretrain --dataset=path/to/images --epochs=100
"""

from __future__ import annotations

import dataclasses

from absl import flags

from contrastive_tf import distribute
from contrastive_tf.encoders import ENCODERS
from contrastive_tf.methods import METHODS, MULTI_VIEW_METHODS
from contrastive_tf.optimizers import LR_SCALINGS, OPTIMIZERS
from contrastive_tf.precision import JIT_COMPILE, PRECISIONS
from contrastive_tf.pretraining import PretrainConfig, pretrain
from experiments import cli

D = PretrainConfig()

flags.DEFINE_string(
    "dataset",
    D.dataset,
    "'sample' (embedded MNIST digits), a TFDS name "
    "(mnist, fashion_mnist, cifar10, cifar100, stl10), a Keras-layout .npz, or an image folder.",
)
flags.DEFINE_string("data_dir", D.data_dir, "TFDS data directory.")
flags.DEFINE_integer("image_size", D.image_size, "Resize images to this square size (default: native size).")
flags.DEFINE_enum("strategy", D.strategy, distribute.STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_integer("cpu_replicas", 0, "With --strategy=mirrored and no GPU: split the CPU into this many devices.")
flags.DEFINE_string("tpu_address", D.tpu_address, "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_enum("method", D.method, METHODS, "What to learn with; supcon needs labels.")
flags.DEFINE_integer("num_views", D.num_views, f"Views per image; more than 2 for {' and '.join(MULTI_VIEW_METHODS)}.")
flags.DEFINE_integer("batch_size", D.batch_size, "Global batch size (images; each gives --num_views views).")
flags.DEFINE_integer("epochs", D.epochs, "Training epochs.")
flags.DEFINE_integer("seed", D.seed, "Random seed for weights, shuffling and augmentation.")
flags.DEFINE_enum("encoder", D.encoder, ("auto", *ENCODERS), "Encoder; auto: small_cnn up to 28 px, else resnet18.")
flags.DEFINE_float("width", D.width, "Encoder width multiplier.")
flags.DEFINE_integer("projection_layers", D.projection_layers, "Projection head layers (2: SimCLR v1, 3: v2).")
flags.DEFINE_integer("projection_dim", D.projection_dim, "Projection (z) dimension.")
flags.DEFINE_float("temperature", D.temperature, "Temperature tau of NT-Xent, InfoNCE (moco) and SupCon.")
flags.DEFINE_enum("optimizer", D.optimizer, OPTIMIZERS, "Optimizer.")
flags.DEFINE_float("learning_rate", D.learning_rate, "Base learning rate, before --lr_scaling.")
flags.DEFINE_enum("lr_scaling", D.lr_scaling, LR_SCALINGS, "linear: lr*B/256, sqrt: lr*sqrt(B), none: lr.")
flags.DEFINE_float("warmup_epochs", D.warmup_epochs, "Linear warmup epochs before cosine decay.")
flags.DEFINE_float("weight_decay", D.weight_decay, "Weight decay (not applied to BN or biases).")
flags.DEFINE_float(
    "target_momentum", D.target_momentum, "Momentum of MoCo's key / BYOL's target network (default 0.99 / 0.996)."
)
flags.DEFINE_integer("queue_size", D.queue_size, "MoCo's queue of negatives.")
flags.DEFINE_float("color_jitter_strength", D.color_jitter_strength, "Colour distortion strength s.")
flags.DEFINE_enum("blur", "auto", ("auto", "true", "false"), "Gaussian blur; auto: on above 32 px.")
flags.DEFINE_float("crop_scale_min", D.crop_scale_min, "Smallest random-crop area fraction.")
flags.DEFINE_enum(
    "precision",
    D.precision,
    PRECISIONS,
    "Keras dtype policy; auto: mixed_bfloat16 on TPUs, Ampere+ GPUs and CPUs with AMX or AVX512-BF16, "
    "mixed_float16 on older tensor-core GPUs, else float32.",
)
flags.DEFINE_enum("jit_compile", D.jit_compile, JIT_COMPILE, "XLA-compile the train step; auto: on GPUs and TPUs.")
flags.DEFINE_string("model_dir", D.model_dir, "Checkpoints, TensorBoard logs, figures; rerun to resume.")
flags.DEFINE_string("export_dir", D.export_dir, "SavedModel export folder (default: MODEL_DIR/export).")
flags.DEFINE_boolean("overwrite", D.overwrite, "Replace an existing export.")
flags.DEFINE_integer(
    "checkpoint_every_steps", D.checkpoint_every_steps, "Checkpoint interval in steps (default: every epoch)."
)
flags.DEFINE_integer(
    "knn_every_epochs", D.knn_every_epochs, "Log the kNN accuracy of the test split every N epochs (0: never)."
)
flags.DEFINE_enum(
    "verbose", "auto", ("auto", "0", "1", "2"), "Keras fit verbosity: 1 progress bar, 2 a line per epoch."
)
FLAGS = flags.FLAGS


def config_from_flags() -> PretrainConfig:
    values = {
        field.name: FLAGS[field.name].value for field in dataclasses.fields(PretrainConfig) if field.name in FLAGS
    }
    values["blur"] = {"auto": None, "true": True, "false": False}[FLAGS.blur]
    values["verbose"] = "auto" if FLAGS.verbose == "auto" else int(FLAGS.verbose)
    return PretrainConfig(**values)


def main(argv: list[str]) -> None:
    if FLAGS.cpu_replicas:
        distribute.use_logical_cpus(FLAGS.cpu_replicas)
    result = pretrain(config_from_flags())
    if result.export_path is None:
        return
    if result.probe is not None:
        print(
            f"linear probe top-1 on {result.probe.num_test} test images: "
            f"learned {result.probe.top1_accuracy:.2%} | random weights {result.random_probe.top1_accuracy:.2%}"
        )
        print(f"kNN top-1 (k=200): {result.knn_top1:.2%}")
    print(f"figures: {', '.join(str(path) for path in result.figures)}")
    print(f"SavedModel: {result.export_path}")


if __name__ == "__main__":
    cli.run(main)
