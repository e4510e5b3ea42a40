"""Views cropped on the host from the original image (SimCLR's `data_util`): windows with the
crop's own aspect drawn on the original, the centre crop for evaluation, and a 4:1 image
whose views keep their shapes where squashing first would stretch them four times."""

import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.data import load_data, pretraining_batches
from contrastive_tf.host_crops import (
    CROP_ASPECT_RANGE,
    center_crop,
    center_window,
    crop_windows,
    random_crops,
    random_window,
)
from references import numpy_simclr_center_window

CELL = 20  # pixels of a checkerboard square in the original


def _checkerboard(height: int, width: int) -> np.ndarray:
    rows, columns = np.indices((height, width)) // CELL
    return np.repeat((((rows + columns) % 2) * 255).astype(np.uint8)[..., None], 3, axis=-1)


@pytest.mark.parametrize("height, width", [(100, 400), (400, 100), (333, 500), (224, 224), (375, 500)])
def test_the_centre_window_is_simclrs(height, width):
    window = center_window(tf.constant([height, width])).numpy().tolist()
    assert window == numpy_simclr_center_window(height, width, 224)


def test_random_windows_keep_the_crops_aspect_and_area_on_a_wide_image():
    shape = tf.constant([100, 400])
    for seed in range(200):
        top, left, height, width = random_window(shape, tf.constant([seed, 7]), (0.08, 1.0)).numpy().tolist()
        assert 0 <= top and top + height <= 100 and 0 <= left and left + width <= 400
        # Integer windows: the aspect within the range up to a pixel's rounding either side.
        assert (width - 1) / (height + 1) <= CROP_ASPECT_RANGE[1] and (width + 1) / (height - 1) >= CROP_ASPECT_RANGE[0]
        # At least 10% of the image (SimCLR's min_object_covered), at most all of it.
        assert 0.1 * 100 * 400 * 0.97 <= height * width <= 100 * 400


@pytest.mark.parametrize("encode", [tf.io.encode_png, tf.io.encode_jpeg])
def test_a_window_decodes_as_the_same_window_of_the_decoded_image(encode):
    pixels = tf.constant(np.random.default_rng(0).integers(0, 256, (60, 90, 3), np.uint8))
    contents = encode(pixels)
    (window,) = crop_windows(contents, lambda shape: [tf.constant([5, 17, 32, 41])], 3)
    window = window.numpy().astype(int)
    expected = tf.io.decode_image(contents).numpy()[5 : 5 + 32, 17 : 17 + 41].astype(int)
    if encode is tf.io.encode_png:
        np.testing.assert_array_equal(window, expected)
    else:  # libjpeg upsamples colour differently at a window's edge: 2% of values differ here
        assert np.mean(window != expected) < 0.05 and np.mean(np.abs(window - expected)) < 1


def test_views_are_the_windows_resized_and_repeat_for_a_seed():
    contents = tf.io.encode_png(tf.constant(_checkerboard(100, 400)))
    views = random_crops(contents, 2, 32, 3, (0.08, 1.0), tf.constant([3, 5], tf.int64))
    assert views.shape == (2, 32, 32, 3) and views.dtype == tf.uint8
    again = random_crops(contents, 2, 32, 3, (0.08, 1.0), tf.constant([3, 5], tf.int64))
    np.testing.assert_array_equal(views.numpy(), again.numpy())
    assert not np.array_equal(views[0].numpy(), views[1].numpy())


def test_the_centre_crop_keeps_the_aspect():
    contents = tf.io.encode_png(tf.constant(_checkerboard(100, 400)))
    crop = center_crop(contents, 35, 3).numpy()[..., 0] > 127
    # An 87.5-px square of 20-px cells, at 35 px: cells of 8 px both ways.
    assert _run_length(crop, axis=1) == pytest.approx(_run_length(crop, axis=0), rel=0.15)


def _run_length(binary: np.ndarray, axis: int) -> float:
    """The mean length of the runs of equal pixels along `axis`, runs cut by the border excluded."""
    lines = binary if axis == 1 else binary.T
    lengths = []
    for line in lines:
        edges = np.flatnonzero(np.diff(line.astype(int))) + 1
        lengths += np.diff(edges).tolist()
    return float(np.mean(lengths)) if lengths else float(len(lines[0]))


def test_views_of_a_wide_image_stay_square_where_squashing_stretches_them(tmp_path):
    """The issue's check: squares of a 4:1 image stay within the crop's aspect range in every
    view (cells as wide as tall up to 4/3), where resizing the image to a square first
    makes them four times as tall as wide."""
    folder = tmp_path / "wide"
    folder.mkdir()
    for index in range(8):
        (folder / f"{index}.png").write_bytes(tf.io.encode_png(tf.constant(_checkerboard(100, 400))).numpy())
    data = load_data(str(folder), image_size=48)
    assert data.host_crops
    views = next(iter(pretraining_batches(data, batch_size=8, seed=0, crop_scale=(0.08, 1.0))))
    assert views.shape == (8, 2, 48, 48, 3)
    for view in views.numpy().reshape(16, 48, 48, 3):
        binary = view[..., 0] > 127
        stretch = _run_length(binary, axis=0) / _run_length(binary, axis=1)  # cell height / width
        assert 0.6 <= stretch <= 1.6, stretch
    squashed = tf.image.resize(tf.constant(_checkerboard(100, 400)), [48, 48]).numpy()[..., 0] > 127
    assert _run_length(squashed, axis=0) / _run_length(squashed, axis=1) > 3
