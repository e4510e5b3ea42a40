"""Image folders: the layout is decided from the whole tree and told in one log line, every
file is either read or counted as skipped with its reason, and a folder too large for
memory streams the same images in the same order."""

import dataclasses
import io
import logging
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from contrastive_tf import data as data_module
from contrastive_tf.data import UNLABELED, load_data
from contrastive_tf.errors import UsageError
from contrastive_tf.streams import UNDECODABLE

_RNG = np.random.default_rng(0)


def _pixels(height: int = 8, width: int = 8, channels: int = 3) -> np.ndarray:
    return _RNG.integers(0, 256, (height, width, channels), np.uint8)


def _png(pixels: np.ndarray | None = None) -> bytes:
    return tf.io.encode_png(_pixels() if pixels is None else pixels).numpy()


def _jpeg() -> bytes:
    return tf.io.encode_jpeg(_pixels()).numpy()


def _pil(image_format: str, *frames: np.ndarray, **options) -> bytes:
    """`frames` encoded by Pillow (TensorFlow encodes only PNG and JPEG)."""
    images = [Image.fromarray(frame) for frame in frames or [_pixels()]]
    buffer = io.BytesIO()
    images[0].save(buffer, format=image_format, save_all=len(images) > 1, append_images=images[1:], **options)
    return buffer.getvalue()


PNG, JPEG = _png(), _jpeg()
ANIMATED_WEBP = _pil("WEBP", _pixels(), _pixels(), lossless=True)


def _write_tree(root: pathlib.Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)


@dataclasses.dataclass
class Expected:
    layout: str  # as the log line says it
    train: int
    test: int | None = None
    classes: tuple[str, ...] = ()
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)


def _many(prefix: str, count: int, content: bytes = PNG) -> dict[str, bytes]:
    return {f"{prefix}{index}.png": content for index in range(count)}


LAYOUTS = {
    # Issue 17 in miniature: 540 at the top and 60 in more/ were read as one class of 60.
    "images at the top and in a subfolder": (
        {**_many("", 20), **{f"more/{index}.jpg": JPEG for index in range(4)}},
        Expected("unlabelled (images at the top and in 1 subfolder, read recursively)", train=24),
    ),
    "only images at the top": (_many("", 3), Expected("unlabelled (images at the top)", train=3)),
    "class folders": (
        {**_many("cat/", 3), **_many("dog/", 2)},
        Expected("class folders (2 classes)", train=5, classes=("cat", "dog")),
    ),
    "train and test splits of class folders": (
        {**_many("train/cat/", 3), **_many("train/dog/", 3), **_many("test/cat/", 1), **_many("test/dog/", 1)},
        Expected("class folders (2 classes) in train/ and test/", train=6, test=2, classes=("cat", "dog")),
    ),
    "test images outside the classes of train": (
        {**_many("train/cat/", 2), **_many("train/dog/", 2), **_many("test/cat/", 1), **_many("test/bird/", 2)}
        | {"test/loose.png": PNG},
        Expected(
            "class folders (2 classes) in train/ and test/",
            train=4,
            test=1,
            classes=("cat", "dog"),
            skipped={"in test/ outside the classes of train/": 3},
        ),
    ),
    "a test split beside an unlabelled train split": (
        {**_many("train/", 3), **_many("test/", 2)},
        Expected(
            "unlabelled (images at the top) in train/ and test/",
            train=3,
            skipped={"in test/ while train/ has no classes": 2},
        ),
    ),
    "images beside train and test": (
        {**_many("train/cat/", 2), **_many("train/dog/", 2), "stray.png": PNG, **_many("val/", 2)},
        Expected("class folders (2 classes) in train/", train=4, classes=("cat", "dog"), skipped={"outside": 3}),
    ),
    "deep nesting below images at the top": (
        {"top.png": PNG, **_many("a/b/c/", 3), **_many("a/", 1)},
        Expected("unlabelled (images at the top and in 1 subfolder, read recursively)", train=5),
    ),
    "deep nesting in one subfolder": (
        _many("a/b/c/", 3),
        Expected("unlabelled (every image below a/, read recursively)", train=3),
    ),
    "class images nested below their folders": (
        {**_many("cat/indoor/", 2), **_many("cat/", 1), **_many("dog/x/y/", 2)},
        Expected("class folders (2 classes)", train=5, classes=("cat", "dog")),
    ),
    "upper-case and long extensions": (
        {"a.JPG": JPEG, "b.PNG": PNG, "c.jpeg": JPEG, "d.Jpeg": JPEG},
        Expected("unlabelled (images at the top)", train=4),
    ),
    "bmp, gif and webp": (
        {"a.bmp": _pil("BMP"), "b.gif": _pil("GIF", _pixels(), _pixels()), "c.webp": _pil("WEBP"), "d.png": PNG},
        Expected("unlabelled (images at the top)", train=4),
    ),
    "hidden files and folders": (
        {"a.png": PNG, ".b.png": PNG, ".DS_Store": b"\0", **_many(".cache/", 5), **_many("cat/.ipynb/", 1)},
        Expected("unlabelled (images at the top)", train=1, skipped={"hidden": 4}),
    ),
    "non-images": (
        {"a.png": PNG, "notes.txt": b"hi", "labels.csv": b"a,1", "README": b"x", "more/x.npy": b"\0"},
        Expected("unlabelled (images at the top)", train=1, skipped={"not images": 4}),
    ),
    "corrupt images": (
        {"a.png": PNG, "junk.png": b"not an image", "empty.jpg": b""}
        | {"truncated.jpg": JPEG[: len(JPEG) // 2], "truncated.png": PNG[: len(PNG) // 2]},
        Expected("unlabelled (images at the top)", train=1, skipped={"cannot be decoded": 4}),
    ),
    "image formats TensorFlow cannot decode": (
        {"a.png": PNG, "b.tif": _pil("TIFF"), "c.TIFF": _pil("TIFF"), "d.heic": b"\0"},
        Expected(
            "unlabelled (images at the top)",
            train=1,
            skipped={".tif (not read; convert to PNG or JPEG)": 1, ".tiff (not read": 1, ".heic (not read": 1},
        ),
    ),
    # Decoding one crashes TensorFlow 2.21's process; it is refused by content, not name.
    "animated webp, whatever its name": (
        {"a.png": PNG, "anim.webp": ANIMATED_WEBP, "anim.png": ANIMATED_WEBP},
        Expected("unlabelled (images at the top)", train=1, skipped={"animated WebP": 2}),
    ),
}


def _load(root: pathlib.Path, caplog, **options):
    """load_data(root) and its one log line."""
    caplog.set_level(logging.INFO, logger=data_module.__name__)
    caplog.clear()
    data = load_data(str(root), **options)
    lines = [r for r in caplog.records if r.name == data_module.__name__ and r.getMessage().startswith("image folder")]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    return data, lines[0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_reads_what_it_should_and_counts_what_it_skips(layout, tmp_path, caplog):
    files, expected = LAYOUTS[layout]
    _write_tree(tmp_path, files)
    data, record = _load(tmp_path, caplog)
    line = record.getMessage()
    assert line.startswith(f"image folder {tmp_path}: {expected.layout}, "), line
    assert data.class_names == expected.classes
    assert data.train.num_examples == expected.train == len(list(data.train.dataset))
    assert (data.test.num_examples if data.test else None) == expected.test
    for reason, count in expected.skipped.items():
        assert f" {count} {reason}" in line, line
    total = sum(expected.skipped.values())
    assert line.endswith("nothing skipped") if not total else f"; skipped {total}: " in line, line


def test_symlinked_files_and_folders_are_followed_and_a_loop_is_read_once(tmp_path, caplog):
    root, outside = tmp_path / "data", tmp_path / "outside"
    _write_tree(root, _many("", 1))
    _write_tree(outside, {"linked.png": PNG, **_many("folder/", 2), **_many("cats/", 2)})
    (root / "linked.png").symlink_to(outside / "linked.png")
    (root / "folder").symlink_to(outside / "folder")
    (root / "loop").symlink_to(root)
    (root / "broken.png").symlink_to(outside / "missing.png")
    data, record = _load(root, caplog)
    assert data.train.num_examples == 4
    assert record.getMessage() == (
        f"image folder {root}: unlabelled (images at the top and in 1 subfolder, read recursively), 4 images; "
        "skipped 2: 1 broken links, 1 folders already read (symlink loops)"
    )


def test_a_symlinked_class_folder_is_a_class(tmp_path, caplog):
    _write_tree(tmp_path / "outside", _many("cats/", 2))
    _write_tree(tmp_path / "data", _many("dog/", 1))
    (tmp_path / "data" / "cat").symlink_to(tmp_path / "outside" / "cats")
    data, _ = _load(tmp_path / "data", caplog)
    assert data.class_names == ("cat", "dog")
    assert [int(label) for _, label in data.train.dataset] == [0, 0, 1]


def test_the_log_line_says_layout_count_and_each_reason_as_a_warning_when_files_were_skipped(tmp_path, caplog):
    files = {**_many("", 20), **_many("more/", 4), "notes.txt": b"", "more/list.csv": b"", ".DS_Store": b""}
    _write_tree(tmp_path, files | {"junk.png": b"junk"})
    _, record = _load(tmp_path, caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"image folder {tmp_path}: unlabelled (images at the top and in 1 subfolder, read recursively), 24 images; "
        "skipped 4: 2 not images, 1 hidden, 1 cannot be decoded"
    )


def test_clean_class_folders_are_told_at_info_level(tmp_path, caplog):
    _write_tree(tmp_path, {**_many("cat/", 2), **_many("dog/", 1)})
    _, record = _load(tmp_path, caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == f"image folder {tmp_path}: class folders (2 classes), 3 images; nothing skipped"


def test_labels_follow_the_sorted_class_folder_names(tmp_path, caplog):
    _write_tree(tmp_path, {**_many("zebra/", 1), **_many("ant/", 2), **_many("bee/x/", 1)})
    data, _ = _load(tmp_path, caplog)
    assert data.class_names == ("ant", "bee", "zebra")
    assert [int(label) for _, label in data.train.dataset] == [0, 0, 1, 2]


def test_a_gif_gives_its_first_frame(tmp_path, caplog):
    red, blue = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    _write_tree(tmp_path, {"a.gif": _pil("GIF", red, blue)})
    data, _ = _load(tmp_path, caplog)
    image, label = next(iter(data.train.dataset))
    np.testing.assert_array_equal(image.numpy(), red)
    assert int(label) == UNLABELED


def test_mixed_sizes_and_modes_are_resized_to_the_first_and_converted(tmp_path, caplog):
    modes = {"a.png": _pixels(16, 16, 3), "b.png": _pixels(20, 24, 1), "c.png": _pixels(8, 8, 4)}
    _write_tree(tmp_path, {name: _png(pixels) for name, pixels in modes.items()} | {"d.png": _png(_pixels(9, 9, 2))})
    data, _ = _load(tmp_path, caplog)
    assert data.image_shape == (16, 16, 3) and data.num_classes == 0
    assert [tuple(image.shape) for image, _ in data.train.dataset] == [(16, 16, 3)] * 4


def test_bmp_gif_and_webp_join_a_grayscale_set(tmp_path, caplog, monkeypatch):
    """Their decoders refuse channels=1; the colour images after the probed one become gray."""
    monkeypatch.setattr(data_module, "_PROBED_FILES", 1)
    _write_tree(tmp_path, {"a.png": _png(_pixels(8, 8, 1)), "b.bmp": _pil("BMP"), "c.gif": _pil("GIF")})
    _write_tree(tmp_path, {"d.webp": _pil("WEBP"), "e.jpg": JPEG})
    data, record = _load(tmp_path, caplog)
    assert data.image_shape == (8, 8, 1) and data.train.num_examples == 5
    assert record.getMessage().endswith("nothing skipped")


def test_image_size_resizes_every_folder_image(tmp_path, caplog):
    _write_tree(tmp_path, {**_many("train/cat/", 1), **_many("train/dog/", 1), **_many("test/dog/", 1)})
    data, _ = _load(tmp_path, caplog, image_size=12)
    assert data.image_shape == (12, 12, 3)
    assert next(iter(data.test.dataset))[0].shape == (12, 12, 3)


def _contents(split):
    return [(image.numpy(), int(label)) for image, label in split.dataset]


def test_a_folder_too_large_for_memory_streams_the_same_images_and_skips_the_undecodable_as_met(
    tmp_path, caplog, monkeypatch
):
    sizes = [(8, 8, 3), (12, 10, 3), (6, 6, 1), (8, 8, 4)]
    files = {f"{kind}/{index}.png": _png(_pixels(*sizes[index])) for kind in ("cat", "dog") for index in range(4)}
    _write_tree(tmp_path, files | {"cat/junk.png": b"junk", "dog/x.jpg": JPEG})
    in_memory, _ = _load(tmp_path, caplog)
    monkeypatch.setattr(data_module, "CACHE_LIMIT_BYTES", 1)
    streamed, streamed_record = _load(tmp_path, caplog)
    # Listed, not decoded, before training: the junk file is found while reading.
    assert streamed.train.num_examples == 10 and in_memory.train.num_examples == 9
    assert streamed_record.getMessage().endswith("10 images, streamed from disk; nothing skipped")
    contents = _contents(streamed.train)
    assert len(contents) == 9
    for (streamed_image, streamed_label), (image, label) in zip(contents, _contents(in_memory.train)):
        np.testing.assert_array_equal(streamed_image, image)
        assert streamed_label == label
    assert dict(streamed.train.stream.skipped.counts) == {UNDECODABLE: 1}


def test_a_folder_of_more_files_than_decoded_before_training_streams(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(data_module, "EAGER_DECODE_MAX_FILES", 3)
    _write_tree(tmp_path, _many("", 4))
    data, record = _load(tmp_path, caplog)
    assert data.train.stream is not None and "streamed from disk" in record.getMessage()


def test_a_streamed_folder_decodes_its_files_each_epoch(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(data_module, "CACHE_LIMIT_BYTES", 1)
    _write_tree(tmp_path, {"a.png": _png(np.zeros((8, 8, 3), np.uint8))})
    data, _ = _load(tmp_path, caplog)
    (tmp_path / "a.png").write_bytes(_png(np.full((8, 8, 3), 7, np.uint8)))
    assert int(next(iter(data.train.dataset))[0][0, 0, 0]) == 7


def test_a_folder_without_images_is_a_usage_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="no images"):
        load_data(str(tmp_path))


def test_a_folder_of_unread_formats_says_what_it_found(tmp_path):
    _write_tree(tmp_path, {"a.tif": b"", "b.tif": b""})
    with pytest.raises(UsageError, match=r"no images .* \(skipped 2: 2 .tif \(not read; convert to PNG or JPEG\)\)"):
        load_data(str(tmp_path))


def test_a_folder_whose_first_images_are_all_corrupt_is_a_usage_error(tmp_path):
    _write_tree(tmp_path, {"a.png": b"junk", "b.png": b""})
    with pytest.raises(UsageError, match=r"none of the first 2 image\(s\) under .* can be decoded"):
        load_data(str(tmp_path))
