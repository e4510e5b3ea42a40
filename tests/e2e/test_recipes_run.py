"""Every recipe in configs/ runs: one epoch on a tiny labelled data set, with the data,
epochs and batch size overridden after the flagfile as a user would on the command line;
and a pretrain -> fine-tune -> distil pipeline runs its three files in turn."""

import subprocess
import sys

import numpy as np
import pytest

from builders import config_from_argv
from conftest import ROOT
from contrastive_tf.pretraining import pretrain

CONFIGS = ROOT / "configs"
# Fine-tuning and distillation files are later steps of a pipeline, for their own entry points.
RECIPES = sorted(path for path in CONFIGS.glob("*.flags") if not path.stem.endswith(("_finetune", "_distill")))
# Table 1's biggest encoder (795M parameters) would not fit a CI machine, and ViT-Small at
# 224 px takes minutes a step there; they are made smaller like the data, and a unit test
# checks the files' own values. SimCLRv2's ResNet-152 becomes a ResNet-50 with the same
# selective kernels: with 152 layers, tracing three steps, the evaluations and the export took
# three and a half minutes on a 2-core AVX2 EPYC, 90 s with 50 (tests/unit/test_big_encoders.py
# builds every depth). The ImageNet recipes
# see the tiny images at 64 px, not 224: the same stems, blocks and patch size at a twelfth
# of the work (SimCLR's ResNet-50 run: 133 s at 224, 53 s at 64).
SMALLER = {
    "simclr_imagenet": ["--image_size=64"],
    "simclrv2_imagenet_pretrain": ["--encoder=resnet50", "--width=0.25", "--image_size=64"],
    "mocov3_imagenet": ["--encoder=vit_tiny", "--image_size=64"],
}


@pytest.fixture(scope="module")
def tiny_colour_images(tmp_path_factory):
    """48 training and 16 test colour images of 4 classes, CIFAR-sized."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(64) % 4
    np.savez(path, x_train=images[:48], y_train=labels[:48], x_test=images[48:], y_test=labels[48:])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_a_recipe_runs_one_epoch_with_data_epochs_and_batch_overridden(path, tiny_colour_images, tmp_path):
    argv = [f"--flagfile={path}", f"--dataset={tiny_colour_images}", "--epochs=1", "--batch_size=16"]
    argv += SMALLER.get(path.stem, [])
    config = config_from_argv(*argv, f"--model_dir={tmp_path}", "--verbose=0")
    result = pretrain(config)
    assert len(result.history["loss"]) == 1 and np.isfinite(result.history["loss"][0])
    assert (result.export_path / "saved_model.pb").exists()


@pytest.mark.slow
def test_the_simclrv2_cifar10_pipeline_runs_its_three_steps(tiny_colour_images, tmp_path):
    runs = {step: tmp_path / step for step in ("pretrain", "finetune", "distill")}
    common = [f"--dataset={tiny_colour_images}", "--epochs=1", "--batch_size=16"]
    steps = [  # each step reads the one before's folder
        ("pretrain", [f"--model_dir={runs['pretrain']}", "--verbose=0"]),
        (
            "finetune",
            [f"--encoder_path={runs['pretrain']}", f"--output_dir={runs['finetune']}", "--label_fraction=0.5"],
        ),
        ("distill", [f"--teacher_path={runs['finetune']}", f"--output_dir={runs['distill']}"]),
    ]
    for step, flags in steps:
        flagfile = CONFIGS / f"simclrv2_cifar10_{step}.flags"
        command = [sys.executable, "-m", f"experiments.{step}", f"--flagfile={flagfile}", *common, *flags]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{step}: {done.stderr[-2000:]}"
    assert (runs["distill"] / "results.json").exists()
