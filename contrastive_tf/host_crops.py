"""Views cropped on the host from the original images, as SimCLR's input pipeline crops them.

Images larger than `image_size` (photos, ImageNet) are not squashed to a square first: each
view's random crop is drawn on the decoded original with its own aspect
(google-research/simclr `tf2/data_util.py`, `crop_and_resize` / `distorted_bounding_box_crop`:
area 8-100%, aspect 3/4-4/3, at least 10% of the image, 100 attempts, then a bicubic resize),
and evaluation takes the aspect-preserving centre crop of 87.5% (`center_crop`). For a JPEG
only the crop's window is decoded. The crop runs in the host's input pipeline; flip, colour,
blur and the rest of `SimCLRAugment` run in the training step, on the accelerator.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

# SimCLR's `CROP_PROPORTION`: the centre crop keeps 87.5% of the image's shorter side.
CENTER_CROP_PROPORTION = 0.875
# SimCLR's `distorted_bounding_box_crop` arguments, beside the area range.
CROP_ASPECT_RANGE = (3 / 4, 4 / 3)
MIN_OBJECT_COVERED = 0.1
MAX_ATTEMPTS = 100
ANIMATED_WEBP = "animated WebP (TensorFlow cannot decode it)"


def _is_animated_webp(contents: tf.Tensor) -> tf.Tensor:
    """Whether encoded bytes are an animated WebP: RIFF....WEBPVP8X with flag bit 1 set."""
    header = tf.strings.join([tf.strings.substr(contents, 0, 21), b"\0" * 21])  # padded: substr needs the bytes
    flags = tf.io.decode_raw(tf.strings.substr(header, 20, 1), tf.uint8)[0]
    return tf.logical_and(
        tf.equal(tf.strings.substr(header, 0, 4), b"RIFF") & tf.equal(tf.strings.substr(header, 8, 8), b"WEBPVP8X"),
        tf.not_equal(tf.bitwise.bitwise_and(flags, 2), 0),
    )


def decode_image(contents: tf.Tensor) -> tf.Tensor:
    """The encoded image's first frame, uint8 [H, W, C] with its own 1 to 4 channels."""
    # TensorFlow 2.21 corrupts memory decoding an animated WebP, whatever the file is called.
    refuse = tf.debugging.Assert(tf.logical_not(_is_animated_webp(contents)), [ANIMATED_WEBP])
    with tf.control_dependencies([refuse]):
        return tf.io.decode_image(contents, expand_animations=False)


def with_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """`image` (uint8, 1 to 4 channels) with `channels` (1 or 3): alpha dropped, colour and
    gray converted."""
    colour = tf.shape(image)[-1] >= 3
    if channels == 3:
        image = tf.cond(colour, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3]))
    else:
        image = tf.cond(colour, lambda: tf.image.rgb_to_grayscale(image[..., :3]), lambda: image[..., :1])
    return tf.ensure_shape(image, [None, None, channels])


def crop_windows(
    contents: tf.Tensor, windows: Callable[[tf.Tensor], list[tf.Tensor]], channels: int
) -> list[tf.Tensor]:
    """The windows [top, left, height, width] that `windows(shape)` picks for the encoded
    image's [height, width], each decoded as uint8 with `channels`. A JPEG decodes only each
    window (its shape read from the header); another format is decoded once."""

    def from_jpeg():
        return [
            with_channels(tf.io.decode_and_crop_jpeg(contents, window, channels=3), channels)
            for window in windows(tf.image.extract_jpeg_shape(contents)[:2])
        ]

    def from_other():
        image = decode_image(contents)
        return [
            with_channels(tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3]), channels)
            for window in windows(tf.shape(image)[:2])
        ]

    # Both branches give windows of unknown size; resizing makes them one shape.
    return tf.cond(tf.io.is_jpeg(contents), from_jpeg, from_other)


def _resized(image: tf.Tensor, size: int) -> tf.Tensor:
    """Bicubic resize to `size` x `size`, as SimCLR does, back to uint8."""
    image = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bicubic")
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def random_window(shape: tf.Tensor, seed: tf.Tensor, area_range: tuple[float, float]) -> tf.Tensor:
    """A random crop window [top, left, height, width] of an image of `shape` [height, width]:
    SimCLR's `distorted_bounding_box_crop`, drawn from the stateless `seed` ([2] int)."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([shape, [1]], 0),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=MIN_OBJECT_COVERED,
        aspect_ratio_range=CROP_ASPECT_RANGE,
        area_range=area_range,
        max_attempts=MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.concat([begin[:2], size[:2]], 0)


def random_crops(
    contents: tf.Tensor, num_views: int, size: int, channels: int, area_range: tuple[float, float], seed: tf.Tensor
) -> tf.Tensor:
    """`num_views` random crops of the encoded image, each resized: uint8 [V, size, size, C].

    Args:
        contents: the encoded file (JPEG, PNG, BMP, GIF, WebP).
        area_range: the crop's fraction of the image's area (SimCLR: (0.08, 1.0)).
        seed: [2] int; view v draws its window from `seed` folded with v.
    """

    def windows(shape):
        return [
            random_window(shape, tf.random.experimental.stateless_fold_in(seed, view), area_range)
            for view in range(num_views)
        ]

    return tf.stack([_resized(view, size) for view in crop_windows(contents, windows, channels)])


def center_window(shape: tf.Tensor, proportion: float = CENTER_CROP_PROPORTION) -> tf.Tensor:
    """The square centre window [top, left, height, width] keeping `proportion` of the shorter
    side (SimCLR's `_compute_crop_shape` for a square output, and its offsets)."""
    side = tf.cast(tf.math.rint(proportion * tf.cast(tf.reduce_min(shape), tf.float32)), tf.int32)
    offsets = (shape - side + 1) // 2
    return tf.stack([offsets[0], offsets[1], side, side])


def center_crop(contents: tf.Tensor, size: int, channels: int) -> tf.Tensor:
    """The aspect-preserving centre crop (87.5%) of the encoded image, resized: uint8 [size, size, C]."""
    (crop,) = crop_windows(contents, lambda shape: [center_window(shape)], channels)
    return _resized(crop, size)
