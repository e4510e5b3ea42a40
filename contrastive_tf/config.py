"""The settings of a pretraining run, each declared once: its default, its help text, the
values it allows and its group (see `contrastive_tf.settings`). The method's own settings
are declared by the methods and join the config here. The command-line flags and the docs'
flag table are made from these declarations, and `PretrainConfig.validate` checks them."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable

from contrastive_tf.distribute import STRATEGIES
from contrastive_tf.encoders import ENCODERS, INPUT_NORMALIZATIONS, is_encoder_name, unknown_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.initializers import INITIALIZERS
from contrastive_tf.methods import METHODS, check_method, setting_fields, setting_names
from contrastive_tf.optimizers import LARS_VARIANTS, LR_SCALINGS, LR_SCHEDULE_INTERVALS, OPTIMIZERS
from contrastive_tf.precision import PRECISIONS
from contrastive_tf.settings import at_least, check_fields, positive, setting, within
from contrastive_tf.tfrecords import IMAGE_KEY, LABEL_KEY, RECORD_ORDERS
from contrastive_tf.vit import VIT_POOLINGS

GROUPS = ("data", "method", "optimisation", "augmentation", "run")


def _method_field(name: str, declarations: list[tuple[str, dataclasses.Field]]) -> tuple[object, typing.Any]:
    """The config field of the method setting `name`: unset by default (each method's own
    default then), with the help text its declaration gives and each method's default."""
    kinds = {typing.get_type_hints(METHODS[method].Settings)[name] | None for method, _ in declarations}
    if len(kinds) > 1:
        raise TypeError(f"methods declare {name} with different types: {', '.join(sorted(map(str, kinds)))}")
    first = declarations[0][1]
    defaults = ", ".join(f"{method} {METHODS[method].Settings.default_text(name)}" for method, _ in declarations)
    help_text = f"{first.metadata['help']} Default: the method's ({defaults})."
    return kinds.pop(), setting(None, help_text, "method", choices=first.metadata["choices"])


def _with_method_settings(after: str) -> Callable[[type], type]:
    """Adds to a config class, after its field `after`, a field for each setting some method
    declares (see `contrastive_tf.methods.setting_fields`), so that a method's settings are
    flags without being written twice."""

    def add(cls: type) -> type:
        annotations = {}
        for name, kind in cls.__annotations__.items():
            annotations[name] = kind
            if name == after:
                for setting_name, declarations in setting_fields().items():
                    annotations[setting_name], field = _method_field(setting_name, declarations)
                    setattr(cls, setting_name, field)
        cls.__annotations__ = annotations
        return cls

    return add


@dataclasses.dataclass
@_with_method_settings(after="frozen_patch_projection")
class PretrainConfig:
    """Everything a pretraining run needs; `pretrain(PretrainConfig(...))` runs it.

    The defaults pretrain the small CNN on the embedded MNIST sample in under two minutes
    on two CPU cores: 3 epochs of batch 128 with Adam at 4e-3 matched 6 epochs of batch 256
    at 2e-3 in half the steps' work (docs/performance.md), and a crop of at least 20% of the
    digit (a smaller crop can cut a digit down to a stroke). The papers' recipes are files in `configs/`. Settings
    of the method left at None take the method's own default (see
    `contrastive_tf.methods.METHODS[name].settings()`).
    """

    # Data.
    dataset: str = setting(
        "sample",
        "'sample' (embedded MNIST digits), any TFDS name (name, name/config, name:version: mnist, cifar10, stl10, "
        "imagenet2012, imagenette/320px, ...), a Keras-layout .npz, an image folder, or a glob of TFRecord shards; "
        ".npz and TFRecords may be on gs://.",
        "data",
    )
    data_dir: str | None = setting(None, "TFDS data directory (may be on gs://).", "data")
    image_size: int | None = setting(
        None,
        "Square size the encoder sees (default: the images' own size). Larger images are not squashed: each view "
        "is cropped from the original (SimCLR's crop) and evaluation takes the 87.5% centre crop.",
        "data",
        valid=at_least(8),
    )
    train_split: str | None = setting(None, "TFDS split to pretrain on (default: train, else the first split).", "data")
    test_split: str | None = setting(
        None,
        "TFDS split to evaluate on (default: test, else validation; imagenet2012: validation), or a glob of "
        "TFRecord shards.",
        "data",
    )
    image_key: str = setting(IMAGE_KEY, "Key of the encoded image in TFRecord Examples.", "data")
    label_key: str = setting(
        LABEL_KEY, "Key of the int64 class in TFRecord Examples; empty for unlabelled records.", "data"
    )
    record_order: str = setting(
        "uniform",
        "How TFRecord shards and streamed TFDS splits are read: uniform (each record's place indexed first, one "
        "read of every record's length: each epoch a uniform permutation of all records, the count exact) or "
        "shards (no index: shards in a new order each epoch, interleaved, through a 10,000-record shuffle buffer; "
        "for buckets where indexing costs a read of the data).",
        "data",
        choices=RECORD_ORDERS,
    )
    num_classes: int | None = setting(
        None,
        "Classes of TFRecord labels (default: the first shard's largest label + 1; TensorFlow's ImageNet "
        "records: 1001, labels 1-1000).",
        "data",
        valid=at_least(1),
    )
    # Method.
    method: str = setting("simclr", "What to learn with; supcon needs labels.", "method", choices=tuple(METHODS))
    num_views: int = setting(2, "Views per image; more than 2 for simclr and supcon.", "method", valid=at_least(2))
    encoder: str = setting(
        "auto",
        f"Encoder: auto (small_cnn up to 28 px, else resnet18), {', '.join(ENCODERS)}; any image model of "
        "keras.applications by its name (MobileNetV3Small, EfficientNetV2B0, ResNet50V2, ConvNeXtTiny, ...: without "
        "its classifier, random weights, its own preprocessing inside); or module.path:function, a function of the "
        "input shape returning a keras.Model (docs/methods.md#backbones-by-name-or-by-hand).",
        "method",
        valid=(is_encoder_name, unknown_encoder),
    )
    encoder_weights: str | None = setting(
        None,
        "A local weights file loaded into the encoder before training: one saved from the same encoder "
        "(encoder.save_weights), or a keras.applications model's weights without its classifier (.h5); unset: random.",
        "method",
    )
    width: float = setting(
        1.0, "Encoder width multiplier (small_cnn, the ResNets; the MobileNets' alpha).", "method", valid=positive()
    )
    sk_ratio: float = setting(
        0.0,
        "Selective kernels in a bottleneck ResNet (resnet50/101/152) as in SimCLRv2: the attention's hidden width "
        "over the branch width; 0: off, 0.0625: SimCLRv2's.",
        "method",
        valid=at_least(0),
    )
    pooling_grid: int = setting(
        1,
        "small_cnn's h: its last feature map averaged over this many cells a side and flattened; 1: global "
        "average pooling (as every ResNet), 2: also where in the image each feature fired.",
        "method",
        valid=at_least(1),
    )
    zero_init_residual: bool = setting(
        True,
        "Start each ResNet block's last batch-norm scale at 0 (SimCLR's); false: at 1 (torchvision's, solo-learn's "
        "and lightly's ResNets).",
        "method",
    )
    initializer: str = setting(
        "keras",
        "Whose initial weights small_cnn's and the ResNets' convolutions and the heads' dense layers take: keras "
        "(he_normal, glorot_uniform), simclr (google-research/simclr's: sqrt(1/2) of he_normal, normal 0.01), "
        "torchvision (its ResNets', with torch's dense layers: solo-learn's), pytorch (torch's layer defaults: "
        "lightly's ResNetGenerator and heads). Batch norm makes the scale a step size: smaller weights move "
        "more per step.",
        "method",
        choices=INITIALIZERS,
    )
    input_normalization: str = setting(
        "none",
        "Standardise the encoder's [0, 1] pixels by a data set's channel means and deviations, inside the encoder, "
        "as torchvision's Normalize in the peers' transforms (lightly: imagenet; solo-learn on CIFAR: cifar10).",
        "method",
        choices=tuple(INPUT_NORMALIZATIONS),
    )
    patch_size: int | None = setting(
        None,
        "A ViT's patch side in pixels, dividing the image size; default: 4 up to 32 px images (CIFAR), else 16.",
        "method",
        valid=at_least(1),
    )
    vit_pooling: str = setting(
        "cls",
        "A ViT's h: its [CLS] token's output (the paper's) or the patch tokens' mean.",
        "method",
        choices=VIT_POOLINGS,
    )
    frozen_patch_projection: bool = setting(
        True,
        "Keep a ViT's patch projection at its random initialisation, MoCo v3's stability trick (--stop-grad-conv1).",
        "method",
    )
    # Optimisation.
    batch_size: int = setting(
        128, "Global batch size (images; each gives num_views views).", "optimisation", valid=at_least(2)
    )
    epochs: int = setting(3, "Training epochs.", "optimisation", valid=at_least(1))
    optimizer: str = setting("adam", "Optimizer.", "optimisation", choices=OPTIMIZERS)
    learning_rate: float = setting(4e-3, "Base learning rate, before lr_scaling.", "optimisation", valid=positive())
    lr_scaling: str = setting(
        "none", "linear: lr*B/256, sqrt: lr*sqrt(B), none: lr.", "optimisation", choices=LR_SCALINGS
    )
    warmup_epochs: float = setting(1.0, "Linear warmup epochs before cosine decay.", "optimisation", valid=at_least(0))
    warmup_start_learning_rate: float = setting(
        0.0,
        "Learning rate the warmup starts from (solo-learn's warmup_start_lr: 3e-5).",
        "optimisation",
        valid=at_least(0),
    )
    lr_schedule_interval: str = setting(
        "step",
        "How often the learning rate changes: every step, or once an epoch (a torch scheduler stepped per epoch, "
        "as lightly's benchmarks).",
        "optimisation",
        choices=LR_SCHEDULE_INTERVALS,
    )
    weight_decay: float = setting(
        1e-6, "Weight decay (not applied to batch norm or biases).", "optimisation", valid=at_least(0)
    )
    weight_decay_vectors: bool = setting(
        False,
        "Also decay batch norm and biases, as torch's SGD over all parameters (lightly; solo-learn's SupCon); "
        "sgd and adamw (LARS never decays them).",
        "optimisation",
    )
    optimizer_momentum: float = setting(
        0.9,
        "Heavy-ball momentum of sgd and lars (0: plain SGD, as lightly's VICReg example); adam and adamw have "
        "their own.",
        "optimisation",
        valid=((lambda value: 0 <= value < 1), "must be in [0, 1)"),
    )
    # LARS' own settings: named lars_ + its argument, and refused with another optimizer.
    lars_trust_coefficient: float = setting(
        0.001,
        "LARS' trust coefficient eta (SimCLR's 0.001; solo-learn's CIFAR recipes: 0.02).",
        "optimisation",
        valid=positive(),
    )
    lars_clip_lr: bool = setting(
        False,
        "Cap each LARS weight matrix's rate at the learning rate: its trust ratio becomes min(trust/lr, 1) "
        "(solo-learn's clip_lr).",
        "optimisation",
    )
    lars_variant: str = setting(
        "simclr",
        "Whose LARS update rule: simclr (google-research/simclr's) or solo_learn (solo-learn's: trust "
        "eta*|w|/(|g|+wd*|w|) on the raw gradient, and torch's momentum, where the learning rate scales the whole "
        "velocity).",
        "optimisation",
        choices=LARS_VARIANTS,
    )
    # Augmentation.
    color_jitter_strength: float = setting(0.5, "Colour distortion strength s.", "augmentation", valid=at_least(0))
    blur: bool | None = setting(None, "Gaussian blur; default (auto): on above 32 px.", "augmentation")
    crop_scale_min: float = setting(
        0.2, "Smallest random-crop area fraction.", "augmentation", valid=within(0, 1, low_open=True)
    )
    flip: bool | None = setting(
        None, "Random horizontal flip; default (auto): off for grayscale images, on for colour.", "augmentation"
    )
    rotation_degrees: float = setting(
        0.0,
        "Random rotation of each view, up to this many degrees either way; 0 (SimCLR's) is off.",
        "augmentation",
        valid=within(0, 180),
    )
    shear_degrees: float = setting(
        0.0,
        "Random slant (horizontal shear) of each view, up to this many degrees either way; 0 (SimCLR's) is off.",
        "augmentation",
        valid=within(0, 60),
    )
    # Run.
    seed: int = setting(0, "Random seed for weights, shuffling and augmentation.", "run")
    strategy: str = setting("auto", "tf.distribute strategy.", "run", choices=STRATEGIES)
    tpu_address: str | None = setting(None, "TPU name or grpc:// address for strategy tpu.", "run")
    precision: str = setting(
        "auto",
        "Keras dtype policy; auto: mixed_bfloat16 on TPUs, Ampere+ GPUs and CPUs with AMX or AVX512-BF16, "
        "mixed_float16 on older tensor-core GPUs, else float32.",
        "run",
        choices=PRECISIONS,
    )
    jit_compile: bool | None = setting(None, "XLA-compile the train step; default (auto): on GPUs and TPUs.", "run")
    fused_batch_norm: bool = setting(
        True,
        "Train small_cnn's and the ResNets' batch norm in one fused op (oneDNN, cuDNN, XLA): Keras' maths rounded "
        "in another order; on an AVX-512 Xeon 1.3x (float32) to 1.9x (bfloat16) faster through ResNet-18 at width "
        "0.25, on an AVX2-only EPYC the CIFAR-10 recipe's float32 step 0.88x as fast; false: Keras' own ops, as "
        "every other encoder's (docs/performance.md).",
        "run",
    )
    model_dir: str = setting("runs/simclr", "Checkpoints, TensorBoard logs, figures; rerun to resume.", "run")
    export_dir: str | None = setting(None, "SavedModel export folder (default: MODEL_DIR/export).", "run")
    overwrite: bool = setting(False, "Replace an existing export.", "run")
    export_tflite: bool = setting(
        False,
        "Also convert the encoder to TFLite (encoder.tflite in the export); the log and the model card give its "
        "size and how far its output is from the SavedModel's.",
        "run",
    )
    checkpoint_every_steps: int | None = setting(
        None, "Checkpoint interval in steps (default: every epoch).", "run", valid=at_least(1)
    )
    knn_every_epochs: int = setting(
        0,
        "Log the kNN accuracy of a validation share of the training split every N epochs (0: never; the run "
        "scores kNN on the test split once, at the end).",
        "run",
        valid=at_least(0),
    )
    verbose: int | None = setting(
        None,
        "Keras fit verbosity: 0 silent, 1 progress bar, 2 a line per epoch; default: Keras' auto.",
        "run",
        valid=(lambda value: value in (0, 1, 2), "must be 0, 1 or 2"),
    )
    final_eval_train_examples: int = setting(
        100_000,
        "The end-of-run evaluations learn from about this many training images, the same share of every class "
        "(drawn with seed); a smaller training split (MNIST, CIFAR) is used whole. The test split is always whole.",
        "run",
        valid=at_least(1),
    )
    final_linear_probe: bool = setting(
        True, "At the end of the run, score the encoder by a linear probe on the test split.", "run"
    )
    final_knn: bool = setting(True, "At the end of the run, score the encoder by kNN on the test split.", "run")
    final_random_baseline: bool = setting(
        True, "At the end of the run, score a randomly initialised encoder by a linear probe, for scale.", "run"
    )

    def method_settings(self) -> dict[str, object]:
        """The method's own settings that this config sets (the others take its defaults)."""
        own = METHODS[self.method].settings() if self.method in METHODS else {}
        return {name: getattr(self, name) for name in own if getattr(self, name, None) is not None}

    def lars_settings(self) -> dict[str, object]:
        """LARS' arguments from the `lars_` fields, under optimizer lars; the others take none."""
        if self.optimizer != "lars":
            return {}
        return {field.name.removeprefix("lars_"): getattr(self, field.name) for field in _lars_fields()}

    def validate(self) -> None:
        """UsageError naming the first setting that cannot work. (Precision and jit_compile
        are checked as they are resolved for the hardware.)"""
        check_fields(self)
        changed = [field.name for field in _lars_fields() if getattr(self, field.name) != field.default]
        if self.optimizer != "lars" and changed:
            raise UsageError(f"{self.optimizer} does not use {changed[0]}; leave it unset or choose optimizer lars")
        # A dataclass field's default is its class attribute.
        if self.optimizer not in ("sgd", "lars") and self.optimizer_momentum != PretrainConfig.optimizer_momentum:
            raise UsageError(f"{self.optimizer} does not use optimizer_momentum; leave it unset or choose sgd or lars")
        unused = [name for name in sorted(setting_names()) if getattr(self, name, None) is not None]
        unused = [name for name in unused if name not in self.method_settings()]
        if unused:
            raise UsageError(f"{self.method} does not use {unused[0]}; leave it unset or choose a method that does")
        check_method(self.method, self.batch_size, self.num_views, **self.method_settings())


def _lars_fields() -> list[dataclasses.Field]:
    return [field for field in dataclasses.fields(PretrainConfig) if field.name.startswith("lars_")]
