"""SimCLR's data augmentation as Keras layers.

Every layer takes a batch of float images in [0, 1], shaped [B, H, W, C] with C = 1
or 3, and draws its random parameters independently per image with stateless ops, so
one call augments the whole batch at once and a seeded layer repeats exactly. The
layers work inside a model and inside `tf.data` maps, parallel ones included: each call
takes a fresh seed from an atomic counter (see `RandomImageLayer`), so parallel calls
never share their random draws.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import keras
import tensorflow as tf

from contrastive_tf.data import is_small


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(
            f"`{name}` must be a pair (min, max) with {low} <= min <= max <= {high}; received {name}={value}."
        )


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1]; received {name}={value}.")


def _per_image(mask: tf.Tensor, if_true: tf.Tensor, if_false: tf.Tensor) -> tf.Tensor:
    """Picks `if_true` for the images where `mask` [B] holds, `if_false` elsewhere."""
    return tf.where(tf.reshape(mask, [-1, 1, 1, 1]), if_true, if_false)


def resolve_flip(flip: bool | None, channels: int | None) -> bool:
    """Whether to flip images with `channels` channels: `flip` when set, else (auto) only
    colour images, since a mirrored digit or letter is another symbol or none.
    Pretraining (`SimCLRAugment`) and fine-tuning share this rule, so they agree."""
    if flip is not None:
        return flip
    if channels is None:
        raise ValueError("`flip=None` (auto) needs a static channel count; set the input shape or `flip`.")
    return channels > 1


def _grayscale(images: tf.Tensor) -> tf.Tensor:
    """Luma of RGB images (or the image itself when it has one channel), keeping C."""
    if images.shape[-1] == 1:
        return images
    luma = tf.image.rgb_to_grayscale(images)
    return tf.broadcast_to(luma, tf.shape(images))


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomImageLayer(keras.layers.Layer):
    """Base class: a per-image random augmentation with an atomic seed counter.

    Keras' `SeedGenerator` reads and then writes its state, so two `tf.data` map calls
    running in parallel can read the same state and draw the same parameters. Here the
    state is a Philox counter advanced by `RngReadAndSkip`, which reads and advances it
    in one locked kernel. The counter is a (non-trainable) weight, so checkpoints carry
    it and a resumed run continues the same random stream. Under a distribution
    strategy the replica id is folded in, so replicas draw different parameters.

    Subclasses implement `augment(images, seed)`, where `seed` is an int64 [2] tensor
    for the stateless random ops.

    Args:
        seed: integer for a repeatable stream, or None for a random one.
        **kwargs: base `Layer` arguments. The dtype defaults to float32, so
            augmentation stays in full precision under a mixed-precision policy.
    """

    def __init__(self, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if seed is not None and (not isinstance(seed, int) or seed < 0):
            raise ValueError(f"`seed` must be a non-negative integer or None; received seed={seed}.")
        self.seed = seed
        key = seed if seed is not None else random.randrange(2**62)
        self.rng_state = self.add_weight(
            shape=(3,),
            dtype="int64",
            initializer=keras.initializers.Constant([0, 0, key]),
            trainable=False,
            name="rng_state",
        )

    def next_seed(self) -> tf.Tensor:
        """A fresh int64 [2] seed; never the same twice for this layer."""
        # XLA compiles RngReadAndSkip too, so compiled and eager steps advance the same counter.
        handle = self.rng_state.value.handle
        state = tf.raw_ops.RngReadAndSkip(resource=handle, alg=1, delta=tf.constant(1, tf.uint64))
        seed = tf.stack([state[0], state[2]])
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            seed = tf.random.experimental.stateless_fold_in(seed, replica.replica_id_in_sync_group)
        return seed

    def call(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training:
            return images
        return self.augment(tf.convert_to_tensor(images, self.compute_dtype), self.next_seed())

    def augment(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


def _uniform(seed: tf.Tensor, shape, low: float = 0.0, high: float = 1.0) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)


def _split(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
    return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def _bilinear_weights(start: tf.Tensor, extent: tf.Tensor, out_size, in_size) -> tf.Tensor:
    """[B, out_size, in_size] bilinear weights that sample `out_size` points evenly from
    `start` to `start + extent` (fractions of the side), as `tf.image.crop_and_resize` does.

    A crop is then two small matmuls, which XLA compiles (CropAndResize has no XLA
    kernel) and which run faster than CropAndResize on CPUs.
    """
    last = tf.cast(in_size - 1, tf.float32)
    steps = tf.cast(tf.maximum(out_size - 1, 1), tf.float32)
    # One output point samples the middle of the crop.
    fraction = tf.where(out_size > 1, tf.range(out_size, dtype=tf.float32) / steps, 0.5)
    points = (start[:, None] + extent[:, None] * fraction[None, :]) * last  # [B, out]
    pixels = tf.range(in_size, dtype=tf.float32)
    return tf.nn.relu(1.0 - tf.abs(points[:, :, None] - pixels[None, None, :]))


class RandomlyApplied(RandomImageLayer):
    """Base class: `transform` applied to each image with probability `probability`.

    The transform runs on the whole batch and the choice is made per image, which keeps
    the batch vectorised. Subclasses implement `transform(images)`.
    """

    def __init__(self, probability: float, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        _check_probability("probability", probability)
        self.probability = probability

    def transform(self, images: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def augment(self, images, seed):
        chosen = _uniform(seed, [tf.shape(images)[0]]) < self.probability
        return _per_image(chosen, self.transform(images), images)

    def get_config(self):
        return {**super().get_config(), "probability": self.probability}


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomResizedCrop(RandomImageLayer):
    """Crops a random area and aspect ratio of each image, resized back to `size`.

    As in SimCLR (and torchvision): the crop covers a fraction of the image area drawn
    from `scale`, with a log-uniform aspect ratio from `ratio`; ten candidates per
    image, the first that fits is kept, and the whole image when none fits.

    Args:
        size: output (height, width); None keeps the input size.
        scale: range of the crop's fraction of the image area.
        ratio: range of the crop's width / height.
        seed: see `RandomImageLayer`.

    Example:
        >>> crop = RandomResizedCrop(seed=0)
        >>> crop(tf.zeros([8, 32, 32, 3])).shape
        TensorShape([8, 32, 32, 3])
    """

    attempts = 10

    def __init__(
        self,
        size: tuple[int, int] | None = None,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        scale, ratio = tuple(scale), tuple(ratio)
        _check_range("scale", scale, 1e-6, 1.0)
        _check_range("ratio", ratio, 1e-6, math.inf)
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"`size` must be (height, width) of positive ints or None; received size={size}.")
        self.size = None if size is None else tuple(int(s) for s in size)
        self.scale, self.ratio = scale, ratio

    def augment(self, images, seed):
        shape = tf.shape(images)
        batch = shape[0]
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        area_seed, ratio_seed, y_seed, x_seed = _split(seed, 4)
        candidates = [batch, self.attempts]
        area = _uniform(area_seed, candidates, *self.scale)
        log_ratio = _uniform(ratio_seed, candidates, math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = tf.exp(log_ratio)
        # Crop sides as fractions of the image sides: w*h = area * H*W, w/h = aspect.
        crop_w = tf.sqrt(area * aspect * height / width)
        crop_h = tf.sqrt(area / aspect * width / height)
        fits = (crop_w <= 1.0) & (crop_h <= 1.0)
        first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
        any_fits = tf.reduce_any(fits, axis=1)
        crop_w = tf.where(any_fits, tf.gather(crop_w, first, batch_dims=1), 1.0)
        crop_h = tf.where(any_fits, tf.gather(crop_h, first, batch_dims=1), 1.0)
        top = _uniform(y_seed, [batch]) * (1.0 - crop_h)
        left = _uniform(x_seed, [batch]) * (1.0 - crop_w)
        out_h, out_w = self.size if self.size is not None else (images.shape[1], images.shape[2])
        rows = _bilinear_weights(top, crop_h, out_h or shape[1], shape[1])
        columns = _bilinear_weights(left, crop_w, out_w or shape[2], shape[2])
        crops = tf.einsum("bih,bhwc,bjw->bijc", rows, images, columns)
        return tf.clip_by_value(crops, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        if self.size is None:
            return input_shape
        return (input_shape[0], *self.size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "scale": self.scale, "ratio": self.ratio}


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomHorizontalFlip(RandomlyApplied):
    """Mirrors each image left-right with probability `probability`.

    Keras' `RandomFlip` flips per image too, but its `SeedGenerator` can repeat draws
    in parallel `tf.data` maps; this one shares the atomic counter of the others.

    Args:
        probability: chance that an image is flipped.
        seed: see `RandomImageLayer`.
    """

    def __init__(self, probability: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(probability, seed=seed, **kwargs)

    def transform(self, images):
        return tf.reverse(images, axis=[2])


def _scale_factors(seed: tf.Tensor, batch, strength: float) -> tf.Tensor:
    """[B, 1, 1, 1] factors uniform in [max(1 - strength, 0), 1 + strength], as SimCLR
    draws them: below 0, brightness would turn the image black and contrast or
    saturation would invert it."""
    return tf.reshape(_uniform(seed, [batch], max(1.0 - strength, 0.0), 1.0 + strength), [-1, 1, 1, 1])


# A colour-jitter step: images [B, H, W, C] and their draws [B, 1, 1, 1] -> images.
Step = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _each_its_step(images: tf.Tensor, steps: list[tuple[Step, tf.Tensor]], which: tf.Tensor) -> tf.Tensor:
    """Image i through `steps[which[i]]` alone (with its own draws), clipped to [0, 1].
    Each step runs on its images only, where computing every step on every image and
    keeping one costs four times as much (the hue's two colour-space conversions most)."""
    positions = tf.dynamic_partition(tf.range(tf.shape(images)[0]), which, len(steps))
    outputs = [
        tf.clip_by_value(step(tf.gather(images, chosen), tf.gather(draws, chosen)), 0.0, 1.0)
        for (step, draws), chosen in zip(steps, positions, strict=True)
    ]
    # Back in place by a scatter, which XLA compiles where dynamic_stitch needs constant positions.
    merged = tf.scatter_nd(tf.concat(positions, 0)[:, None], tf.concat(outputs, 0), tf.shape(images))
    return tf.ensure_shape(merged, images.shape)


def _adjust_brightness(images, factor):
    return images * factor


def _shift_brightness(images, shift):
    return images + shift


def _adjust_contrast(images, factor):
    mean = tf.reduce_mean(_grayscale(images), axis=[1, 2, 3], keepdims=True)
    return (images - mean) * factor + mean


def _adjust_saturation(images, factor):
    gray = _grayscale(images)
    return (images - gray) * factor + gray


def _adjust_channel_contrast(images, factor):
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return (images - mean) * factor + mean


def _adjust_hsv_saturation(images, factor):
    if images.shape[-1] == 1:
        return images
    hue, saturation, value = tf.split(tf.image.rgb_to_hsv(images), 3, axis=-1)
    saturation = tf.clip_by_value(saturation * factor, 0.0, 1.0)
    return tf.image.hsv_to_rgb(tf.concat([hue, saturation, value], axis=-1))


def _shifts(seed: tf.Tensor, batch, limit: float) -> tf.Tensor:
    """[B, 1, 1, 1] shifts uniform in [-limit, limit]."""
    return tf.reshape(_uniform(seed, [batch], -limit, limit), [-1, 1, 1, 1])


def _adjust_hue(images, shift):
    if images.shape[-1] == 1:
        return images
    hsv = tf.image.rgb_to_hsv(images)
    hue = tf.math.floormod(hsv[..., :1] + shift, 1.0)
    return tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=-1))


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomColorJitter(RandomImageLayer):
    """SimCLR's colour distortion: brightness, contrast, saturation and hue, in an order
    drawn per image.

    Each factor is drawn per image: brightness, contrast and saturation scale by a
    factor in [max(1 - x, 0), 1 + x] (clamped at 0, as SimCLR), the hue shifts by up to
    +-`hue` of a full turn; each step is clipped to [0, 1]. Keras' `RandomColorJitter`
    applies its four steps in a fixed order; SimCLR shuffles them. Contrast and saturation
    blend with the gray image as torchvision's `ColorJitter` does (SimCLR's `tf.image` ops,
    as `BYOLColorJitter`, scale each channel about its own mean and the HSV saturation).
    On one-channel images saturation and hue leave the image unchanged.

    Args:
        brightness, contrast, saturation: maximum relative change, >= 0.
        hue: maximum hue shift, in [0, 0.5].
        seed: see `RandomImageLayer`.
    """

    def __init__(
        self,
        brightness: float = 0.8,
        contrast: float = 0.8,
        saturation: float = 0.8,
        hue: float = 0.2,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if value < 0:
                raise ValueError(f"`{name}` must be >= 0; received {name}={value}.")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"`hue` must be in [0, 0.5]; received hue={hue}.")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def steps(self, batch: tf.Tensor, seeds: list[tf.Tensor]) -> list[tuple[Step, tf.Tensor]]:
        """Brightness, contrast, saturation and hue, each a function of the images and
        their [B, 1, 1, 1] draws, with its draws from its seed."""
        return [
            (_adjust_brightness, _scale_factors(seeds[0], batch, self.brightness)),
            (_adjust_contrast, _scale_factors(seeds[1], batch, self.contrast)),
            (_adjust_saturation, _scale_factors(seeds[2], batch, self.saturation)),
            (_adjust_hue, _shifts(seeds[3], batch, self.hue)),
        ]

    def augment(self, images, seed):
        batch = tf.shape(images)[0]
        order_seed, *step_seeds = _split(seed, 5)
        steps = self.steps(batch, step_seeds)
        # A random permutation per image; at position k each image takes its own step.
        order = tf.argsort(_uniform(order_seed, [batch, len(steps)]), axis=1)
        for position in range(len(steps)):
            images = _each_its_step(images, steps, order[:, position])
        return tf.clip_by_value(images, 0.0, 1.0)

    def get_config(self):
        return {
            **super().get_config(),
            "brightness": self.brightness,
            "contrast": self.contrast,
            "saturation": self.saturation,
            "hue": self.hue,
        }


@keras.saving.register_keras_serializable(package="contrastive_tf")
class BYOLColorJitter(RandomColorJitter):
    """BYOL's colour jitter (google-deepmind byol `utils/augmentations.py`, which follows
    TensorFlow's `tf.image` ops): as `RandomColorJitter`, in an order drawn per image and
    each step clipped to [0, 1], but brightness adds a shift of up to +-`brightness` (as
    `tf.image.random_brightness`), contrast scales each channel about its own mean, and
    saturation scales the HSV saturation, clipped to [0, 1]. BYOL's views take (0.4, 0.4,
    0.2, 0.1).

    Args:
        brightness: largest brightness shift, in units of the [0, 1] range.
        contrast, saturation, hue, seed: as `RandomColorJitter`.
    """

    def steps(self, batch, seeds):
        return [
            (_shift_brightness, _shifts(seeds[0], batch, self.brightness)),
            (_adjust_channel_contrast, _scale_factors(seeds[1], batch, self.contrast)),
            (_adjust_hsv_saturation, _scale_factors(seeds[2], batch, self.saturation)),
            (_adjust_hue, _shifts(seeds[3], batch, self.hue)),
        ]


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomGrayscale(RandomlyApplied):
    """Turns each image to grayscale (keeping its channels) with probability `probability`.

    Args:
        probability: chance that an image turns gray.
        seed: see `RandomImageLayer`.
    """

    def __init__(self, probability: float = 0.2, seed: int | None = None, **kwargs):
        super().__init__(probability, seed=seed, **kwargs)

    def transform(self, images):
        return _grayscale(images)


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomSolarize(RandomlyApplied):
    """Solarizes each image with probability `probability`, as BYOL: pixels x >= 0.5
    become 1 - x, darker pixels stay. BYOL solarizes one of its two views (p = 0.2).

    Args:
        probability: chance that an image is solarized.
        seed: see `RandomImageLayer`.

    Example:
        >>> solarize = RandomSolarize(probability=1.0, seed=0)
        >>> float(solarize(tf.fill([1, 2, 2, 1], 0.75))[0, 0, 0, 0])
        0.25
    """

    def __init__(self, probability: float = 0.2, seed: int | None = None, **kwargs):
        super().__init__(probability, seed=seed, **kwargs)

    def transform(self, images):
        return tf.where(images < 0.5, images, 1.0 - images)


# The blur kernels `RandomGaussianBlur` draws, after the references that use them.
BLUR_KERNELS = ("gaussian", "pil")
# PIL's GaussianBlur runs three box passes along each axis (src/libImaging/BoxBlur.c).
_PIL_PASSES = 3


def _pil_box(sigma: tf.Tensor, largest: float) -> tf.Tensor:
    """[B, 2m + 1] weights of the box PIL passes three times for a Gaussian of `sigma` [B]
    (BoxBlur.c, after Gwosdek et al. 2011): of radius l + a, the 2l + 1 central taps weigh
    1 / (2(l + a) + 1) and the two next to them share the rest, so that its variance is
    sigma^2 / 3. m is the reach of the box for the `largest` sigma."""
    variance = tf.square(sigma) / _PIL_PASSES
    whole = tf.floor((tf.sqrt(12.0 * variance + 1.0) - 1.0) / 2.0)
    fraction = (2 * whole + 1) * (whole * (whole + 1) - 3 * variance) / (6 * (variance - tf.square(whole + 1)))
    inner = 1.0 / (2.0 * (whole + fraction) + 1.0)
    outer = (1.0 - (2.0 * whole + 1.0) * inner) / 2.0
    # The margin covers float32 landing above a whole number that float64 lands below.
    reach = math.floor((math.sqrt(12 * largest**2 / _PIL_PASSES + 1) - 1) / 2 + 1e-4) + 1
    distance = tf.abs(tf.range(-reach, reach + 1, dtype=tf.float32))[None, :]
    whole, inner, outer = whole[:, None], inner[:, None], outer[:, None]
    return tf.where(distance <= whole, inner, tf.where(distance == whole + 1, outer, 0.0))


def _filter_along(folded: tf.Tensor, kernel: tf.Tensor, axis: int, repeat_edges: bool) -> tf.Tensor:
    """`folded` [1, H, W, N] with each channel n convolved along `axis` (1: down the
    columns, 2: along the rows) with its own kernel[n] ([N, K], K odd), the image carried
    past its border by repeating the edge pixels (`repeat_edges`, as PIL) or by reflection."""
    radius = kernel.shape[1] // 2
    if repeat_edges:
        last = tf.shape(folded)[axis] - 1
        first_pixels = tf.gather(folded, tf.zeros([radius], tf.int32), axis=axis)
        last_pixels = tf.gather(folded, tf.fill([radius], last), axis=axis)
        padded = tf.concat([first_pixels, folded, last_pixels], axis=axis)
    else:
        paddings = [[0, 0], [0, 0], [0, 0], [0, 0]]
        paddings[axis] = [radius, radius]
        padded = tf.pad(folded, paddings, mode="REFLECT")
    taps = tf.transpose(kernel)  # [K, N]
    weights = taps[:, None, :, None] if axis == 1 else taps[None, :, :, None]
    return tf.nn.depthwise_conv2d(padded, weights, [1, 1, 1, 1], "VALID")


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomGaussianBlur(RandomImageLayer):
    """Blurs each image with its own Gaussian sigma, drawn uniformly from `sigma`, with
    the kernel of one of the references:

    - "gaussian", SimCLR's and BYOL's (`data_util.gaussian_blur`): the Gaussian sampled
      on `kernel_fraction` of the image height, 10% in both: 23 taps at 224 px, but 3 at
      32 px, too few to hold a sigma of 2.
    - "pil", PIL's `ImageFilter.GaussianBlur(radius=sigma)`, which solo-learn, Barlow
      Twins and VICReg call at every image size: three passes of a box of fractional
      width whose variances add up to sigma^2, each pass repeating the edge pixels (up
      to 13 taps in all at sigma 2). PIL rounds to 8 bits after each of its six passes;
      this stays in float.

    Keras' blur draws one sigma per batch. Here every image gets its own separable
    kernel, applied as depthwise convolutions over the batch folded into channels.

    Args:
        sigma: range of the blur's standard deviation, in pixels.
        kernel_fraction: the "gaussian" kernel's side as a fraction of the image height.
        seed: see `RandomImageLayer`.
        kernel: "gaussian", "pil", or None (auto): "pil" on images of CIFAR's 32 px or
            smaller, where SimCLR's kernel is too short and the recipes that blur there
            (solo-learn's) call PIL; "gaussian" above.
    """

    def __init__(
        self,
        sigma: tuple[float, float] = (0.1, 2.0),
        kernel_fraction: float = 0.1,
        seed: int | None = None,
        kernel: str | None = "gaussian",
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        sigma = tuple(sigma)
        _check_range("sigma", sigma, 1e-6, math.inf)
        if not 0 < kernel_fraction <= 1:
            raise ValueError(f"`kernel_fraction` must be in (0, 1]; received kernel_fraction={kernel_fraction}.")
        if kernel is not None and kernel not in BLUR_KERNELS:
            raise ValueError(f"`kernel` must be one of {BLUR_KERNELS} or None (auto); received kernel={kernel!r}.")
        self.sigma, self.kernel_fraction, self.kernel = sigma, kernel_fraction, kernel

    def augment(self, images, seed):
        if None in images.shape[1:3]:
            raise ValueError("RandomGaussianBlur needs a static image height and width; set the input shape.")
        kernel = self.kernel or ("pil" if is_small(images.shape[1:]) else "gaussian")
        shape = tf.shape(images)
        batch, channels = shape[0], shape[3]
        sigma = _uniform(seed, [batch], *self.sigma)
        # Fold the batch into channels: [1, H, W, B*C], one depthwise filter per image-channel.
        folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, shape[1], shape[2], batch * channels])
        if kernel == "pil":
            box = tf.repeat(_pil_box(sigma, self.sigma[1]), channels, axis=0)  # [B*C, K], channel-major per image
            for axis in (2, 1):  # PIL blurs along the rows first
                for _ in range(_PIL_PASSES):
                    folded = _filter_along(folded, box, axis, repeat_edges=True)
        else:
            radius = max(1, int(images.shape[1] * self.kernel_fraction) // 2)
            offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
            gaussian = tf.exp(-0.5 * tf.square(offsets[None, :] / sigma[:, None]))
            gaussian = tf.repeat(gaussian / tf.reduce_sum(gaussian, axis=1, keepdims=True), channels, axis=0)
            for axis in (1, 2):
                folded = _filter_along(folded, gaussian, axis, repeat_edges=False)
        blurred = tf.transpose(tf.reshape(folded, [shape[1], shape[2], batch, channels]), [2, 0, 1, 3])
        return tf.ensure_shape(blurred, images.shape)

    def get_config(self):
        return {
            **super().get_config(),
            "sigma": self.sigma,
            "kernel_fraction": self.kernel_fraction,
            "kernel": self.kernel,
        }


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomGaussianNoise(RandomImageLayer):
    """Adds Gaussian pixel noise of standard deviation `stddev`, clipped to [0, 1].

    Args:
        stddev: noise standard deviation, in units of the [0, 1] range.
        seed: see `RandomImageLayer`.
    """

    def __init__(self, stddev: float = 0.05, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if stddev < 0:
            raise ValueError(f"`stddev` must be >= 0; received stddev={stddev}.")
        self.stddev = stddev

    def augment(self, images, seed):
        noise = tf.random.stateless_normal(tf.shape(images), seed, stddev=self.stddev)
        return tf.clip_by_value(images + noise, 0.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


def _sample(images: tf.Tensor, transform: list[tf.Tensor]) -> tf.Tensor:
    """Output pixel (x, y) of each image samples its input at (a0 x + a1 y + a2,
    b0 x + b1 y + b2), bilinearly, with black outside; `transform` holds the eight
    projective coefficients [a0, a1, a2, b0, b1, b2, 0, 0], each a [B] tensor. The output
    keeps the input's static shape, which the op loses when the batch size is unknown."""
    sampled = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.stack(transform, axis=1),
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return tf.ensure_shape(sampled, images.shape)


class _RandomAngle(RandomImageLayer):
    """A geometric layer that draws an angle per image in [-max_degrees, max_degrees],
    up to `LIMIT` degrees."""

    LIMIT = 180.0

    def __init__(self, max_degrees: float = 15.0, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0 <= max_degrees <= self.LIMIT:
            raise ValueError(f"`max_degrees` must be in [0, {self.LIMIT:g}]; received max_degrees={max_degrees}.")
        self.max_degrees = max_degrees

    def _angles(self, images, seed) -> tf.Tensor:
        """One angle per image, in radians."""
        return _uniform(seed, [tf.shape(images)[0]], -self.max_degrees, self.max_degrees) * (math.pi / 180)

    def get_config(self):
        return {**super().get_config(), "max_degrees": self.max_degrees}


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomRotation(_RandomAngle):
    """Rotates each image about its centre by its own angle in [-max_degrees, max_degrees].

    Pixels rotated in from outside the image are filled with zeros (black).

    Args:
        max_degrees: largest rotation either way, in degrees, in [0, 180].
        seed: see `RandomImageLayer`.
    """

    def augment(self, images, seed):
        shape = tf.shape(images)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        angle = self._angles(images, seed)
        cos, sin = tf.cos(angle), tf.sin(angle)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        zeros = tf.zeros_like(angle)
        return _sample(images, [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, zeros, zeros])


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomShear(_RandomAngle):
    """Slants each image by its own horizontal shear of an angle in [-max_degrees,
    max_degrees]: rows move sideways in proportion to their height above the centre, as
    handwriting leans (a digit's slant varies by writer; rotation turns the whole digit).

    Args:
        max_degrees: largest slant either way, in degrees, in [0, 60].
        seed: see `RandomImageLayer`.
    """

    LIMIT = 60.0

    def augment(self, images, seed):
        return shear(images, tf.tan(self._angles(images, seed)))


def shear(images: tf.Tensor, slope: tf.Tensor) -> tf.Tensor:
    """`images` [B, H, W, C] with row y shifted right by slope * (centre row - y) pixels:
    the row above the centre goes right by `slope` [B] (tan of the slant angle)."""
    cy = (tf.cast(tf.shape(images)[1], tf.float32) - 1) / 2
    ones, zeros = tf.ones_like(slope), tf.zeros_like(slope)
    return _sample(images, [ones, slope, -slope * cy, zeros, ones, zeros, zeros, zeros])


@keras.saving.register_keras_serializable(package="contrastive_tf")
class RandomApply(RandomlyApplied):
    """Applies `layer` to each image with probability `probability`, else passes it through.

    Args:
        layer: any Keras layer that keeps the image shape.
        probability: chance that an image is transformed.
        seed: see `RandomImageLayer`.

    Example:
        >>> jitter = RandomApply(RandomColorJitter(seed=1), probability=0.8, seed=2)
    """

    def __init__(self, layer: keras.layers.Layer, probability: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(probability, seed=seed, **kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"`layer` must be a Keras layer; received layer={layer!r}.")
        self.layer = layer

    def build(self, input_shape):
        self.layer.build(input_shape)

    def transform(self, images):
        return self.layer(images, training=True)

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}


# Whose colour distortion `SimCLRAugment` draws.
COLOR_JITTERS = ("simclr", "torchvision", "byol")


@keras.saving.register_keras_serializable(package="contrastive_tf")
class SimCLRAugment(keras.layers.Layer):
    """SimCLR's augmentation pipeline in one layer: one call makes one view per image.

    Crop (area 0.08-1, aspect 3/4-4/3) -> horizontal flip (colour images) -> colour
    distortion of strength s (brightness, contrast, saturation 0.8 s, hue 0.2 s, random
    order) with p=0.8 -> grayscale with p=0.2 -> Gaussian blur with p=0.5 -> optional
    solarization, rotation and noise. `SimCLRAugment.cifar()` is the paper's CIFAR
    variant (s=0.5, no blur). BYOL's two asymmetric views are two instances:
    `blur=True, blur_probability=1.0` and
    `blur=True, blur_probability=0.1, solarize_probability=0.2`, with BYOL's colour
    jitter (`color_jitter="byol"`; see `methods.base.asymmetric_augmenters`).

    Input: float images in [0, 1], [B, H, W, C] with C = 1 or 3; output: same shape
    and range. Call it twice on the same batch for the two views.

    Args:
        color_jitter_strength: s above; 0 turns colour distortion off.
        blur: whether to blur; None means on for images larger than CIFAR's 32 px.
        crop_scale: area range of the random crop.
        grayscale_probability: chance of turning a view gray.
        noise_stddev: Gaussian pixel noise; 0 turns it off.
        rotation_degrees: random rotation range; 0 turns it off.
        shear_degrees: random slant range (`RandomShear`); 0 turns it off.
        seed: seeds every sub-layer, for a repeatable stream.
        blur_probability: chance of blurring a view, when `blur` is on.
        solarize_probability: chance of solarizing a view (BYOL); 0 turns it off.
        flip: whether to flip half the views left-right; None means on for colour
            images and off for grayscale ones (see `resolve_flip`).
        blur_kernel: "gaussian" (SimCLR's: 10% of the image side), "pil" (PIL's, as
            solo-learn, Barlow Twins and VICReg), or None (auto): "pil" at 32 px or less,
            where SimCLR's 3 taps cannot hold the sigma drawn (see `RandomGaussianBlur`).
        color_jitter: whose colour distortion: "simclr" (above); "torchvision", the
            views of Barlow Twins' `Transform` (and of VICReg, solo-learn's
            `asymmetric.yaml` and lightly's `BYOLTransform`): torchvision's `ColorJitter` of brightness, contrast 0.8 s,
            saturation 0.4 s, hue 0.2 s (`RandomColorJitter`); or "byol", BYOL's views:
            the same strengths with brightness added, not multiplied (`BYOLColorJitter`).
            At s = 0.5 the last two are their references' (0.4, 0.4, 0.2, 0.1).

    Example:
        >>> augment = SimCLRAugment(color_jitter_strength=0.5, seed=0)
        >>> images = tf.random.uniform([4, 32, 32, 3])
        >>> view_a, view_b = augment(images), augment(images)
    """

    def __init__(
        self,
        color_jitter_strength: float = 1.0,
        blur: bool | None = None,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        grayscale_probability: float = 0.2,
        noise_stddev: float = 0.0,
        rotation_degrees: float = 0.0,
        seed: int | None = None,
        blur_probability: float = 0.5,
        solarize_probability: float = 0.0,
        flip: bool | None = None,
        shear_degrees: float = 0.0,
        blur_kernel: str | None = None,
        color_jitter: str = "simclr",
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if color_jitter_strength < 0:
            raise ValueError(
                f"`color_jitter_strength` must be >= 0; received color_jitter_strength={color_jitter_strength}."
            )
        for name, value in (
            ("grayscale_probability", grayscale_probability),
            ("blur_probability", blur_probability),
            ("solarize_probability", solarize_probability),
        ):
            _check_probability(name, value)
        if flip is not None and not isinstance(flip, bool):
            raise ValueError(f"`flip` must be True, False or None (auto); received flip={flip!r}.")
        if color_jitter not in COLOR_JITTERS:
            raise ValueError(f"`color_jitter` must be one of {COLOR_JITTERS}; received color_jitter={color_jitter!r}.")
        if blur_kernel is not None and blur_kernel not in BLUR_KERNELS:
            raise ValueError(
                f"`blur_kernel` must be one of {BLUR_KERNELS} or None (auto); received blur_kernel={blur_kernel!r}."
            )
        self.color_jitter_strength, self.blur, self.crop_scale = color_jitter_strength, blur, tuple(crop_scale)
        self.grayscale_probability, self.noise_stddev = grayscale_probability, noise_stddev
        self.rotation_degrees, self.shear_degrees, self.seed = rotation_degrees, shear_degrees, seed
        self.blur_probability, self.solarize_probability = blur_probability, solarize_probability
        self.blur_kernel, self.color_jitter = blur_kernel, color_jitter
        # `self.flip` names the flip layer (its weights' path in saved models), so the
        # setting has another name.
        self.flip_setting = flip

        def sub_seed(offset: int) -> int | None:
            return None if seed is None else seed * 16 + offset

        s = color_jitter_strength
        # The BYOL-style views jitter saturation at half SimCLR's strength.
        saturation = 0.8 * s if color_jitter == "simclr" else 0.4 * s
        jitter = BYOLColorJitter if color_jitter == "byol" else RandomColorJitter
        self.crop = RandomResizedCrop(scale=self.crop_scale, seed=sub_seed(0))
        self.flip = RandomHorizontalFlip(seed=sub_seed(1))
        self.color = RandomApply(
            jitter(0.8 * s, 0.8 * s, saturation, min(0.2 * s, 0.5), seed=sub_seed(2)),
            probability=0.8 if s > 0 else 0.0,
            seed=sub_seed(3),
        )
        self.gray = RandomGrayscale(grayscale_probability, seed=sub_seed(4))
        self.blur_layer = RandomApply(
            RandomGaussianBlur(seed=sub_seed(5), kernel=blur_kernel), probability=blur_probability, seed=sub_seed(6)
        )
        self.noise = RandomGaussianNoise(noise_stddev, seed=sub_seed(7))
        self.rotation = RandomRotation(rotation_degrees, seed=sub_seed(8))
        # Made only when used, so models saved before solarization existed still load.
        self.solarize = RandomSolarize(solarize_probability, seed=sub_seed(9)) if solarize_probability > 0 else None
        self.shear = RandomShear(shear_degrees, seed=sub_seed(10)) if shear_degrees > 0 else None

    def build(self, input_shape):
        for layer in (self.crop, self.flip, self.color, self.gray, self.blur_layer, self.noise, self.rotation):
            layer.build(input_shape)
        for layer in (self.solarize, self.shear):
            if layer is not None:
                layer.build(input_shape)

    @classmethod
    def cifar(cls, seed: int | None = None) -> SimCLRAugment:
        """The paper's CIFAR-10 recipe: colour strength 0.5 and no blur."""
        return cls(color_jitter_strength=0.5, blur=False, seed=seed)

    def call(self, images: tf.Tensor, training: bool = True, crop: bool = True) -> tf.Tensor:
        """One view of each image; `crop=False` for views already cropped on the host from
        the original images (`contrastive_tf.host_crops`)."""
        if not training:
            return images
        if crop:
            images = self.crop(images)
        if resolve_flip(self.flip_setting, images.shape[-1]):
            images = self.flip(images)
        if self.color_jitter_strength > 0:
            images = self.color(images)
        if self.grayscale_probability > 0:
            images = self.gray(images)
        blur = self.blur if self.blur is not None else images.shape[1] is not None and not is_small(images.shape[1:])
        if blur:
            images = self.blur_layer(images)
        if self.solarize is not None:
            images = self.solarize(images)
        if self.rotation_degrees > 0:
            images = self.rotation(images)
        if self.shear is not None:
            images = self.shear(images)
        if self.noise_stddev > 0:
            images = self.noise(images)
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "color_jitter_strength": self.color_jitter_strength,
            "blur": self.blur,
            "crop_scale": self.crop_scale,
            "grayscale_probability": self.grayscale_probability,
            "noise_stddev": self.noise_stddev,
            "rotation_degrees": self.rotation_degrees,
            "seed": self.seed,
            "blur_probability": self.blur_probability,
            "solarize_probability": self.solarize_probability,
            "flip": self.flip_setting,
            "shear_degrees": self.shear_degrees,
            "blur_kernel": self.blur_kernel,
            "color_jitter": self.color_jitter,
        }

    @classmethod
    def from_config(cls, config):
        # Files saved before `blur_kernel` existed blurred with SimCLR's kernel at every size.
        return super().from_config({"blur_kernel": "gaussian", **config})

    def variant(self, seed_offset: int = 0, **changes) -> SimCLRAugment:
        """A copy with `changes` to its arguments, e.g. BYOL's second view. A copy drawing
        a different view needs its own stream: `seed_offset` moves its seed."""
        config = {**self.get_config(), **changes}
        if seed_offset:
            config["name"] = f"{self.name}_{seed_offset}"
            config["seed"] = None if self.seed is None else self.seed + seed_offset
        return SimCLRAugment.from_config(config)
