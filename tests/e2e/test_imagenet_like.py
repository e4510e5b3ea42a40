"""The ImageNet recipe's pipeline, end to end on 2 cores: `configs/simclr_imagenet.flags`
with small overrides runs one epoch from an ImageNet-like set of JPEGs of varied sizes and
aspects (200-500 px) in class folders, from the same images in TFRecord shards laid out as
TensorFlow's ImageNet records, and from a TFDS builder by name with its data_dir."""

import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tiny_tfds
from conftest import ROOT

CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 200, 50
# Small enough for 2 cores: a narrow ResNet-18 at 32 px, batch 64, one epoch.
OVERRIDES = (
    "--image_size=32", "--encoder=resnet18", "--width=0.25", "--batch_size=64", "--epochs=1",
    "--warmup_epochs=0", "--precision=float32", "--verbose=2",
)  # fmt: skip


def _photo(rng: np.random.Generator) -> bytes:
    """A JPEG of 200-500 px a side with smooth content, as photos compress."""
    height, width = rng.integers(200, 500, 2)
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(coarse).resize((int(width), int(height)), Image.BILINEAR).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _example(contents: bytes, label: int) -> bytes:
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[contents])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory) -> pathlib.Path:
    """2,000 JPEGs in train/ and test/ class folders, and the same in TFRecord shards named
    as TensorFlow's build script names them (train-0000N-of-00004, validation-00000-of-00001;
    labels from 1, as ImageNet's 1-1000)."""
    root = tmp_path_factory.mktemp("imagenet_like")
    rng = np.random.default_rng(0)
    records = {"train": [], "validation": []}
    for label in range(CLASSES):
        for index in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
            split = "train" if index < TRAIN_PER_CLASS else "test"
            contents = _photo(rng)
            folder = root / "folders" / split / f"n{label:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index}.JPEG").write_bytes(contents)
            records["train" if split == "train" else "validation"].append(_example(contents, label + 1))
    (root / "records").mkdir()
    order = rng.permutation(len(records["train"]))  # the build script shuffles before sharding
    for shard, part in enumerate(np.array_split(order, 4)):
        with tf.io.TFRecordWriter(str(root / "records" / f"train-{shard:05d}-of-00004")) as writer:
            for index in part:
                writer.write(records["train"][index])
    with tf.io.TFRecordWriter(str(root / "records" / "validation-00000-of-00001")) as writer:
        for record in records["validation"]:
            writer.write(record)
    return root


def _pretrain(model_dir: pathlib.Path, *flags: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "experiments.pretrain", "--flagfile=configs/simclr_imagenet.flags",
        *OVERRIDES, f"--model_dir={model_dir}", *flags,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _card(model_dir: pathlib.Path) -> dict:
    return json.loads((model_dir / "export" / "model_card.json").read_text())


@pytest.mark.slow
def test_the_imagenet_recipe_runs_an_epoch_from_class_folders(imagenet_like, tmp_path):
    result = _pretrain(tmp_path, f"--dataset={imagenet_like / 'folders'}")
    assert "1600 train + 400 test images, streamed, each view cropped from the original" in result.stderr
    card = _card(tmp_path)
    assert card["epochs_trained"] == 1 and card["views"].startswith("each cropped on the host")
    assert card["unreadable_files_skipped"] == 0 and card["linear_probe_top1"] is not None


@pytest.mark.slow
def test_the_imagenet_recipe_runs_an_epoch_from_tfrecord_shards(imagenet_like, tmp_path):
    records = imagenet_like / "records"
    result = _pretrain(tmp_path, f"--dataset={records / 'train-*'}", f"--test_split={records / 'validation-*'}")
    assert "indexed 1600 records of 4 shards" in result.stderr and ": 1600 images + 400 test" in result.stderr
    card = _card(tmp_path)
    assert card["epochs_trained"] == 1 and card["linear_probe_top1"] is not None


@pytest.mark.slow
def test_the_imagenet_recipe_runs_an_epoch_from_a_tfds_builder_by_name(tmp_path):
    data_dir = tmp_path / "tfds"
    name = tiny_tfds.prepare(str(data_dir), "photos")
    _pretrain(tmp_path / "run", f"--dataset={name}", f"--data_dir={data_dir}", "--batch_size=8")
    card = _card(tmp_path / "run")
    assert card["dataset"] == name and card["epochs_trained"] == 1 and card["views"].startswith("each cropped")
