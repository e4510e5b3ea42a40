"""The benchmark's FLOP counting, its ImageNet-like images and its JSON output (speed itself
is not asserted)."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from contrastive_tf import build_encoder
from contrastive_tf.config import PretrainConfig
from contrastive_tf.methods import contrastive_model
from experiments import benchmarks, cli
from experiments.benchmarks import forward_flops


def test_forward_flops_counts_convolutions_and_dense_layers():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 outputs * 3*3*1*4 MACs
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same")(x)  # 4*4 outputs * 3*3*4*6 MACs
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2)(x)  # 6*2 MACs
    model = keras.Model(inputs, outputs)
    assert forward_flops(model) == 2 * (8 * 8 * 36 + 4 * 4 * 216 + 12)


def test_resnet18_cifar_forward_is_about_half_a_gigamac():
    # The published figure for ResNet-18 on 32x32 CIFAR images is ~0.56 GMACs per image.
    macs = forward_flops(build_encoder("resnet18", (32, 32, 3))) / 2
    assert macs == pytest.approx(0.556e9, rel=0.02)


def test_peak_memory_is_absent_where_there_is_no_resource_module(monkeypatch):
    monkeypatch.setattr(benchmarks, "resource", None)  # as on Windows
    assert benchmarks.peak_rss_mb() is None


@pytest.mark.slow
def test_benchmark_writes_the_table_and_json_rows(tmp_path):
    path = tmp_path / "bench.json"
    flags = ["--encoders=small_cnn", "--precisions=float32", "--jit_compile=false", "--steps=2", "--batch_size=32"]
    # The default 4096^2 float32 peak alone takes most of a minute on 2 cores.
    flags += ["--matmul_size=1024", "--host_images=64"]
    result = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", *flags, f"--json={path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "matmul 1024^2 peak" in result.stdout and "the fastest ResNet-18 step" not in result.stdout  # none timed
    rows = json.loads(path.read_text())
    assert [row["name"] for row in rows] == [
        "host_crops_tfrecords",
        "host_crops_tfrecords_unindexed",
        "host_crops_folder",
        "simclr_train_step",
        "fit_iterator_per_epoch",
        "fit_one_iterator",
        "augmentation_two_views",
        "input_pipeline_two_views",
    ]
    required = {"name", "encoder", "image_size", "batch_size", "precision", "jit_compile", "images_per_second", "mfu"}
    for row in rows:
        assert required <= set(row) and row["images_per_second"] > 0
        assert row["matmul_peak_gflops"]["float32"] > 0 and row["versions"]["tensorflow"]
    train_step = rows[3]
    assert train_step["name"] == "simclr_train_step" and 0 < train_step["mfu"] < 1
    assert train_step["training_gflops_per_image"] > 0


def test_a_method_with_a_predictor_and_a_momentum_network_costs_those_too():
    encoder = build_encoder("small_cnn", (28, 28, 1))
    byol = contrastive_model("byol", encoder, keras.layers.Identity())
    byol.build((None, 28, 28, 1))
    online = forward_flops(byol.encoder) + forward_flops(byol.projection_head)
    predictor = forward_flops(byol.predictor)
    # Each view: forward and back through the online network, forward through the target.
    assert benchmarks.training_flops_per_image(byol) == 2 * (3 * (online + predictor) + online)
    moco = contrastive_model("moco", build_encoder("small_cnn", (28, 28, 1)), keras.layers.Identity())
    moco.build((None, 28, 28, 1))
    online = forward_flops(moco.encoder) + forward_flops(moco.projection_head)
    # The query view forward and back through the online network, the key view forward through the key network.
    assert benchmarks.training_flops_per_image(moco) == 3 * online + online


def test_a_recipe_step_is_timed_as_pretrain_builds_it(tmp_path):
    recipe = tmp_path / "tiny.flags"
    recipe.write_text("--method=simclr\n--dataset=sample\n--batch_size=16\n--precision=float32\n--width=0.5\n")
    config = cli.config_from_argv(PretrainConfig, [f"--flagfile={recipe}"])
    row = benchmarks.recipe_step_throughput("tiny", config, {"float32": 1e12}, steps=2, warmup=1)
    assert (row.name, row.encoder, row.image_size, row.batch_size, row.precision) == (
        "tiny",
        "small_cnn_w0.5",
        28,
        16,
        "float32",
    )
    assert row.images_per_second > 0 and 0 < row.mfu < 1
    assert not any(tmp_path.glob("runs*"))  # nothing saved beside the recipe


def test_the_stand_in_jpegs_have_imagenets_sizes():
    # ImageNet's training JPEGs: about 400 x 350 px and 110 KB on average.
    jpegs = benchmarks.imagenet_like_jpegs(64)
    heights, widths = np.array([tf.image.extract_jpeg_shape(jpeg)[:2].numpy() for jpeg in jpegs]).T
    assert 350 < widths.mean() < 450 and 300 < heights.mean() < 400
    assert 80e3 < np.mean([len(jpeg) for jpeg in jpegs]) < 140e3


def test_host_crop_rows_crop_two_views_on_one_core():
    rows = list(benchmarks.host_crops_throughput(["tfrecords", "folder"], count=16, batch_size=8))
    assert [row.name for row in rows] == ["host_crops_tfrecords", "host_crops_folder"]
    for row in rows:
        assert (row.image_size, row.batch_size, row.precision) == (224, 8, "uint8")
        assert row.images_per_second > 0 and row.peak_rss_mb > 0
        # One tf.data thread: the process keeps at most about one core busy (less when the machine is loaded).
        assert 0 < row.cpu_cores < 1.5
