"""The benchmark's FLOP counting and its JSON output (speed itself is not asserted)."""

import json
import subprocess
import sys

import keras
import pytest

from conftest import ROOT
from contrastive_tf import build_encoder
from experiments import benchmarks
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
    flags.append("--matmul_size=1024")
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
    assert 0 < rows[0]["mfu"] < 1 and rows[0]["training_gflops_per_image"] > 0
