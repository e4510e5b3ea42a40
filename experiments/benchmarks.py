"""Throughput measurements: the machine's matmul peak, SimCLR train-step images/s and
model FLOPs utilisation (MFU), the rates of the augmentation and the input pipeline, and
the host's rate of cropping views from ImageNet-sized JPEGs per core.

Every rate is measured after a warm-up (tracing, autotuning) over enough steps to be
stable; FLOPs are counted from the model's own layers.

This is the harness of `experiments.benchmark`, not part of the library: it lives beside
its entry point and uses only the library's public names.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from contrastive_tf import ProjectionHead, SimCLR, SimCLRAugment, build_encoder
from contrastive_tf.config import PretrainConfig
from contrastive_tf.data import ImageData, Split, load_data, pretraining_batches, to_unit_range
from contrastive_tf.methods import ContrastiveModel
from contrastive_tf.precision import global_precision
from contrastive_tf.pretraining import build_model, prepare

try:
    import resource
except ImportError:  # Windows has no `resource`: peak memory is then not reported.
    resource = None

# A training step costs about three forward passes: the forward pass itself, and the
# gradients with respect to activations and to weights, each as large as the forward.
TRAINING_FLOPS_PER_FORWARD = 3
# ImageNet's training images are about 400 x 350 px and 110 KB on average (JPEG); the
# benchmark's stand-ins: width 250-550 px, aspect (width / height) 3/4-2, log-uniform.
IMAGENET_WIDTHS = (250, 550)
IMAGENET_ASPECTS = (3 / 4, 2)
# Texture amplitudes at 1/32, 1/8 and 1/2 of the resolution, and the JPEG quality: files of
# about 100 KB on average (2,048 of them: 101.7 KB, 400 x 337 px), near ImageNet's.
_TEXTURE = ((32, 60.0), (8, 30.0), (2, 40.0))
_JPEG_QUALITY = 94


@dataclasses.dataclass
class Measurement:
    """One row of the benchmark table."""

    name: str
    encoder: str
    image_size: int
    batch_size: int
    precision: str
    jit_compile: bool
    images_per_second: float
    mfu: float | None = None
    training_gflops_per_image: float | None = None
    peak_rss_mb: float | None = None
    # CPU time of the process over wall time while the row was timed: the cores it kept busy.
    cpu_cores: float | None = None


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB; None where the platform has no
    `resource` module (Windows), so the benchmark still runs there."""
    if resource is None:
        return None
    # ru_maxrss is in KiB on Linux but in bytes on macOS.
    bytes_per_unit = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * bytes_per_unit / 2**20


def _timed(run: Callable[[], object], warmup: int, repeats: int) -> float:
    """Seconds per call of `run`, after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def matmul_peak_flops(dtype: tf.DType, size: int = 4096, chain: int = 8, repeats: int = 5) -> float:
    """Measured FLOP/s of square `size` matmuls in `dtype`: the machine's practical peak.

    Each call chains `chain` dependent matmuls and returns one scalar, so neither copying
    the result out nor pruning of unused products distorts the time.
    """
    a = tf.cast(tf.random.normal([size, size]), dtype)
    b = tf.cast(tf.random.normal([size, size]) / size**0.5, dtype)  # keeps magnitudes stable

    @tf.function
    def chained():
        x = a
        for _ in range(chain):
            x = tf.matmul(x, b)
        return tf.reduce_sum(tf.cast(x[:1, :1], tf.float32))

    chained().numpy()  # trace and warm up
    # The fastest of the repeats: a peak, which other load on the machine can only lower.
    seconds = min(_timed(lambda: chained().numpy(), warmup=0, repeats=1) for _ in range(repeats))
    return 2 * size**3 * chain / seconds


def forward_flops(model: keras.Model | keras.layers.Layer) -> float:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of one example through the
    convolution and dense layers of `model` (element-wise layers are negligible)."""
    flops = 0.0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            height, width = layer.output.shape[1:3]
            kernel = np.prod(layer.kernel.shape)  # kh * kw * c_in * c_out
            flops += 2 * height * width * kernel
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * np.prod(layer.kernel.shape)
    return float(flops)


def _leaf_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers without sublayers inside `layer` (itself, if it has none)."""
    if isinstance(layer, keras.Model):
        children = layer.layers
    else:
        # Private, but Keras lists a plain Layer's sublayers (ProjectionHead's Dense) nowhere public.
        children = list(layer._flatten_layers(include_self=False, recursive=False))
    if not children:
        return [layer]
    return [leaf for child in children for leaf in _leaf_layers(child)]


def training_flops_per_image(model: ContrastiveModel) -> float:
    """FLOPs of one training image: its views through the encoder, head and predictor,
    forward and back, and through a momentum network's copy of encoder and head, forward
    only. BYOL sends each view through both; MoCo one view (the query) through the online
    network and the other (the key) through the momentum one."""
    copied = forward_flops(model.encoder) + forward_flops(model.projection_head)
    predictor = getattr(model, "predictor", None)
    trained = TRAINING_FLOPS_PER_FORWARD * (copied + (forward_flops(predictor) if predictor is not None else 0.0))
    if hasattr(model, "key_network"):
        return trained + copied
    return model.num_views * (trained + (copied if hasattr(model, "target_network") else 0.0))


def _synthetic_images(count: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


class _Clock(keras.callbacks.Callback):
    """When each train step (or each epoch) of a `fit` finished. Timing inside one `fit`
    leaves out its start and end, where tf.data can stall for 10 ms * 2^k tearing down
    an iterator."""

    def __init__(self, every: str = "step"):
        super().__init__()
        self.every = every

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.every == "step":
            float(logs["loss"])  # waits for the step to finish
            self.ends.append(time.perf_counter())

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.every == "epoch":
            self.ends.append(time.perf_counter())


def _simclr(encoder: str, image_shape: tuple[int, int, int], jit_compile: bool, augment: bool = True) -> SimCLR:
    model = SimCLR(
        build_encoder(encoder, image_shape),
        ProjectionHead(),
        SimCLRAugment(color_jitter_strength=0.5, blur=False, seed=0) if augment else keras.layers.Identity(),
        temperature=0.5,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=jit_compile)
    return model


def epochs_throughput(
    one_iterator: bool,
    encoder: str = "small_cnn",
    image_shape: tuple[int, int, int] = (28, 28, 1),
    batch_size: int = 256,
    steps_per_epoch: int = 12,
    epochs: int = 4,
) -> Measurement:
    """Images/s of `fit` over several short epochs of a shuffled in-memory data set, epoch
    boundaries included, after the first epoch. `one_iterator` repeats the data set and
    passes `steps_per_epoch` (what `pretrain` does); otherwise Keras makes a fresh
    iterator each epoch."""
    images = _synthetic_images(batch_size * steps_per_epoch, image_shape)
    batches = tf.data.Dataset.from_tensor_slices(images).shuffle(len(images)).batch(batch_size, drop_remainder=True)
    batches = batches.prefetch(tf.data.AUTOTUNE)
    model = _simclr(encoder, image_shape, jit_compile=False)
    clock = _Clock(every="epoch")
    if one_iterator:
        model.fit(batches.repeat(), steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=0, callbacks=[clock])
    else:
        model.fit(batches, epochs=epochs, verbose=0, callbacks=[clock])
    seconds = clock.ends[-1] - clock.ends[0]
    return Measurement(
        name="fit_one_iterator" if one_iterator else "fit_iterator_per_epoch",
        encoder=encoder,
        image_size=image_shape[0],
        batch_size=batch_size,
        precision=keras.mixed_precision.global_policy().name,
        jit_compile=False,
        images_per_second=(epochs - 1) * steps_per_epoch * batch_size / seconds,
        peak_rss_mb=peak_rss_mb(),
    )


def train_step_throughput(
    encoder: str,
    image_shape: tuple[int, int, int],
    batch_size: int,
    precision: str,
    jit_compile: bool,
    peak_flops: float,
    steps: int = 10,
    warmup: int = 3,
    augment: bool = True,
) -> Measurement:
    """Images/s of `SimCLR.fit` on synthetic uint8 images, and its MFU against `peak_flops`.

    With `augment=False` the views are the images themselves: the difference in step
    time is what the in-model augmentation costs while training runs.
    """
    with global_precision(precision):
        model = _simclr(encoder, image_shape, jit_compile, augment)
        batch = tf.constant(_synthetic_images(batch_size, image_shape))
        batches = tf.data.Dataset.from_tensors(batch).repeat()
        clock = _Clock()
        model.fit(batches, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[clock])
        images_per_second = steps * batch_size / (clock.ends[-1] - clock.ends[warmup - 1])
        flops = training_flops_per_image(model)
    return Measurement(
        name="simclr_train_step" if augment else "simclr_step_no_augmentation",
        encoder=encoder,
        image_size=image_shape[0],
        batch_size=batch_size,
        precision=precision,
        jit_compile=jit_compile,
        images_per_second=images_per_second,
        mfu=flops * images_per_second / peak_flops,
        training_gflops_per_image=flops / 1e9,
        peak_rss_mb=peak_rss_mb(),
    )


def recipe_step_throughput(
    name: str, config: PretrainConfig, peak_flops: dict[str, float], steps: int = 10, warmup: int = 3
) -> Measurement:
    """Images/s and MFU of a recipe's own training: its method, encoder, batch, augmentation
    and precision, fed by its data pipeline, as `pretrain` builds them (nothing is saved).

    `peak_flops` maps a matmul dtype ("float32", "bfloat16", "float16") to its measured
    peak; the run's precision picks one. Loading the recipe's data comes before the clock.
    """
    with tempfile.TemporaryDirectory() as model_dir:
        run = prepare(dataclasses.replace(config, model_dir=model_dir, export_dir=None))
        model = build_model(run)
        clock = _Clock()
        with global_precision(run.precision):
            batches = run.batches_from(0)
            model.fit(batches, steps_per_epoch=warmup + steps, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    images_per_second = steps * config.batch_size / (clock.ends[-1] - clock.ends[warmup - 1])
    flops = training_flops_per_image(model)
    return Measurement(
        name=name,
        encoder=model.encoder.name,
        image_size=run.data.image_shape[0],
        batch_size=config.batch_size,
        precision=run.precision,
        jit_compile=run.jit_compile,
        images_per_second=images_per_second,
        mfu=flops * images_per_second / peak_flops[run.precision.removeprefix("mixed_")],
        training_gflops_per_image=flops / 1e9,
        peak_rss_mb=peak_rss_mb(),
    )


def augmentation_rate_in_training(with_augmentation: Measurement, without_augmentation: Measurement) -> float:
    """Images/s at which the in-model augmentation makes both views while training runs:
    the inverse of the extra step time per image that augmenting adds."""
    extra_seconds = 1 / with_augmentation.images_per_second - 1 / without_augmentation.images_per_second
    return math.inf if extra_seconds <= 0 else 1 / extra_seconds


def _two_views(augment: SimCLRAugment) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """A function that makes both views of a uint8 batch with `augment`."""

    def views(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = to_unit_range(batch)
        return augment(images), augment(images)

    return views


def _views_measurement(name: str, image_shape: tuple[int, int, int], batch_size: int, seconds: float) -> Measurement:
    return Measurement(
        name=name,
        encoder="-",
        image_size=image_shape[0],
        batch_size=batch_size,
        precision="float32",
        jit_compile=False,
        images_per_second=batch_size / seconds,
        peak_rss_mb=peak_rss_mb(),
    )


def augmentation_throughput(image_shape: tuple[int, int, int], batch_size: int = 512, repeats: int = 10) -> Measurement:
    """Images/s at which `SimCLRAugment.cifar()` makes both views of a batch."""
    images = tf.constant(_synthetic_images(batch_size, image_shape))
    views = tf.function(_two_views(SimCLRAugment.cifar(seed=0)))
    seconds = _timed(lambda: [view.numpy() for view in views(images)], warmup=2, repeats=repeats)
    return _views_measurement("augmentation_two_views", image_shape, batch_size, seconds)


def input_pipeline_throughput(
    image_shape: tuple[int, int, int], batch_size: int = 512, count: int = 10_240, batches: int = 20
) -> Measurement:
    """Images/s of the whole tf.data pipeline (cache, shuffle, batch, prefetch) with both
    views made in a parallel map, as a user who augments in tf.data would run it."""
    images = _synthetic_images(count, image_shape)
    data = ImageData(
        "synthetic", image_shape, Split(tf.data.Dataset.from_tensor_slices((images, np.zeros(count, np.int64))), count)
    )
    pipeline = pretraining_batches(data, batch_size, seed=0, with_labels=False)
    views = _two_views(SimCLRAugment.cifar(seed=0))
    iterator = iter(pipeline.map(views, num_parallel_calls=tf.data.AUTOTUNE).repeat())
    seconds = _timed(lambda: next(iterator), warmup=3, repeats=batches)
    return _views_measurement("input_pipeline_two_views", image_shape, batch_size, seconds)


def imagenet_like_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """`count` JPEGs of ImageNet's sizes (`IMAGENET_WIDTHS`, `IMAGENET_ASPECTS`) whose
    content, smooth colour with texture at a few scales, compresses about as photos do
    (`_TEXTURE`): decoding time grows with the bytes, so noise or flat colour would mislead.
    Each is a window of one textured canvas, its colours scaled and shifted."""
    rng = np.random.default_rng(seed)
    side = math.ceil(IMAGENET_WIDTHS[1] / IMAGENET_ASPECTS[0])
    canvas = np.full((side, side, 3), 128.0, np.float32)
    for scale, amplitude in _TEXTURE:
        coarse = rng.normal(0, 1, (side // scale, side // scale, 3)).astype(np.float32)
        canvas += amplitude * tf.image.resize(coarse, [side, side], method="bicubic").numpy()
    jpegs = []
    for _ in range(count):
        width = int(rng.integers(IMAGENET_WIDTHS[0], IMAGENET_WIDTHS[1] + 1))
        height = round(width / math.exp(rng.uniform(*np.log(IMAGENET_ASPECTS))))
        top, left = rng.integers(0, side - height + 1), rng.integers(0, side - width + 1)
        image = canvas[top : top + height, left : left + width] * rng.uniform(0.8, 1.2, 3) + rng.uniform(-20, 20, 3)
        jpegs.append(tf.io.encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), quality=_JPEG_QUALITY).numpy())
    return jpegs


# Classes (folders, or labels 1.. in the records) and TFRecord shards of the stand-ins.
_CLASSES = 4
_SHARDS = 4


def _write_tfrecords(jpegs: list[bytes], root: pathlib.Path) -> str:
    """The JPEGs as TFRecord shards in the layout of TensorFlow's ImageNet records, every
    class in every shard; their glob."""
    for shard in range(_SHARDS):
        with tf.io.TFRecordWriter(str(root / f"train-{shard:05d}-of-{_SHARDS:05d}")) as writer:
            for index in range(shard, len(jpegs), _SHARDS):
                label = 1 + index // _SHARDS % _CLASSES
                feature = {
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpegs[index]])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(root / "train-*")


def _write_class_folders(jpegs: list[bytes], root: pathlib.Path) -> str:
    """The JPEGs in class folders named as ImageNet's (`train/n00000001/5.JPEG`); the folder."""
    for index, jpeg in enumerate(jpegs):
        folder = root / "train" / f"n{index % _CLASSES:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.JPEG").write_bytes(jpeg)
    return str(root)


# Each source: how its files are written, and load_data's options for it.
HOST_CROP_SOURCES = {
    "tfrecords": (_write_tfrecords, {}),
    "tfrecords_unindexed": (_write_tfrecords, {"record_order": "shards"}),
    "folder": (_write_class_folders, {}),
}


def host_crops_throughput(
    sources: list[str], count: int = 1024, batch_size: int = 256, image_size: int = 224
) -> Iterator[Measurement]:
    """A row per source of `HOST_CROP_SOURCES`, as measured: images/s of `pretraining_batches`
    cropping two views of each of `count` ImageNet-like JPEGs on the host, as pretraining
    reads them (the crop's window decoded, resized bicubically to `image_size`), on one
    tf.data thread. One epoch is timed after a warm-up batch; `cpu_cores` (at most about
    one, less when other processes share the CPU) turns images/s into the rate per host core."""
    jpegs = imagenet_like_jpegs(count)
    # One thread for every tf.data op, and no intra-op parallelism inside the ops.
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    for source in sources:
        with tempfile.TemporaryDirectory() as folder:
            write, source_options = HOST_CROP_SOURCES[source]
            data = load_data(write(jpegs, pathlib.Path(folder)), image_size=image_size, **source_options)
            if not data.host_crops:
                raise ValueError(f"image_size {image_size} is not below the stand-ins' widths {IMAGENET_WIDTHS}")
            batches = pretraining_batches(data, batch_size, seed=0, epochs=None).with_options(options)
            iterator = iter(batches)
            next(iterator)
            timed = count // batch_size
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(timed):
                next(iterator)  # returns once the batch is made
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            del iterator  # stops its prefetching before the files go
        yield Measurement(
            name=f"host_crops_{source}",
            encoder="-",
            image_size=image_size,
            batch_size=batch_size,
            precision="uint8",
            jit_compile=False,
            images_per_second=timed * batch_size / seconds,
            peak_rss_mb=peak_rss_mb(),
            cpu_cores=cpu_seconds / seconds,
        )
