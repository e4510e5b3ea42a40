"""The evaluation entry points end to end, from a short real pretraining run on MNIST:
linear eval, kNN, fine-tuning (and its from-scratch baseline), distillation."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from contrastive_tf.encoders import ENCODERS
from contrastive_tf.evaluation import stratified_indices


def _run(entry_point, *flags):
    command = [sys.executable, "-m", f"experiments.{entry_point}", *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _results(output_dir, entry_point, num_test=1000):
    results = json.loads((output_dir / "results.json").read_text())
    assert 0.0 <= results["top1_accuracy"] <= 1.0 and 0.0 <= results["top5_accuracy"] <= 1.0
    assert results["command"].startswith(f"python -m experiments.{entry_point} ")
    assert results["versions"]["tensorflow"] and results["versions"]["keras"]
    assert np.sum(results["confusion_matrix"]) == results["num_test"] == num_test
    assert len(results["per_class"]) == 10
    for path in results["figures"].values():
        with open(path, "rb") as png:
            assert png.read(4) == b"\x89PNG"
    return results


@pytest.mark.slow
def test_linear_and_knn_eval_from_the_export_and_the_model_dir(pretrained_run, mnist_subset, tmp_path):
    model_dir, _ = pretrained_run
    linear = _run(
        "linear_eval", f"--encoder_path={model_dir / 'export'}", f"--dataset={mnist_subset}",
        f"--output_dir={tmp_path / 'linear'}",
    )  # fmt: skip
    assert linear.returncode == 0, linear.stderr[-3000:]
    results = _results(tmp_path / "linear", "linear_eval")
    assert results["evaluation"] == "linear" and results["num_train"] == 4000
    assert results["protocol"] == "standardised" and results["l2"] == 1e-4
    assert results["top1_accuracy"] > 0.5, results["top1_accuracy"]  # chance is 0.1
    assert "training_curves" not in results["figures"]  # solved, not trained by epochs
    assert f"{results['top1_accuracy']:.2%}" in linear.stdout

    knn = _run(
        "knn_eval", f"--encoder_path={model_dir}", f"--dataset={mnist_subset}", "--label_fraction=0.1",
        f"--output_dir={tmp_path / 'knn'}",
    )  # fmt: skip
    assert knn.returncode == 0, knn.stderr[-3000:]
    results = _results(tmp_path / "knn", "knn_eval")
    with np.load(mnist_subset) as mnist:
        assert results["num_train"] == len(stratified_indices(mnist["y_train"], 0.1, seed=0))
    assert results["k"] == 200 and results["temperature"] == 0.1 and results["top1_accuracy"] > 0.5


@pytest.mark.slow
def test_finetune_from_scratch_and_distill(pretrained_run, mnist_subset, tmp_path):
    model_dir, _ = pretrained_run
    common = [f"--encoder_path={model_dir}", f"--dataset={mnist_subset}", "--label_fraction=0.05", "--epochs=3"]
    tuned = _run("finetune", *common, f"--output_dir={tmp_path / 'tuned'}")
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    results = _results(tmp_path / "tuned", "finetune")
    with np.load(mnist_subset) as mnist:
        assert results["num_train"] == len(stratified_indices(mnist["y_train"], 0.05, seed=0))  # about 200
    assert results["evaluation"] == "finetune" and results["label_fraction"] == 0.05
    assert results["top1_accuracy"] > 0.2
    assert (tmp_path / "tuned" / "classifier.keras").stat().st_size > 0

    scratch = _run("finetune", *common, "--from_scratch", "--head_layers=1", f"--output_dir={tmp_path / 'scratch'}")
    assert scratch.returncode == 0, scratch.stderr[-3000:]
    assert _results(tmp_path / "scratch", "finetune")["evaluation"] == "from_scratch"

    distilled = _run(
        "distill", f"--teacher_path={tmp_path / 'tuned'}", f"--dataset={mnist_subset}", "--epochs=3",
        "--student_encoder=small_cnn", "--student_width=0.25", f"--output_dir={tmp_path / 'distilled'}",
    )  # fmt: skip
    assert distilled.returncode == 0, distilled.stderr[-3000:]
    results = _results(tmp_path / "distilled", "distill")
    assert results["teacher_top1_accuracy"] == pytest.approx(
        json.loads((tmp_path / "tuned" / "results.json").read_text())["top1_accuracy"]
    )
    assert results["num_train"] == 4000 and results["encoder"] == "small_cnn_w0.25" and results["top1_accuracy"] > 0.2

    # Any encoder pretrain takes, here a user's factory, can be the student.
    by_hand = _run(
        "distill", f"--teacher_path={tmp_path / 'tuned'}", f"--dataset={mnist_subset}", "--epochs=1",
        "--student_encoder=tests.tiny_backbones:build", f"--output_dir={tmp_path / 'by_hand'}",
    )  # fmt: skip
    assert by_hand.returncode == 0, by_hand.stderr[-3000:]
    assert _results(tmp_path / "by_hand", "distill")["encoder"] == "tiny_backbone"


@pytest.mark.slow
@pytest.mark.parametrize(
    "entry_point, flags, message",
    [
        ("linear_eval", ["--encoder_path=/no/such/run"], "encoder path /no/such/run does not exist"),
        ("finetune", ["--encoder_path={export}"], "fine-tuning needs the whole trainable model"),
        ("knn_eval", ["--encoder_path={run}", "--label_fraction=0"], "label_fraction must be in (0, 1]"),
        ("distill", ["--teacher_path=/no/such/run"], "no teacher at /no/such/run"),
        (
            "distill",
            ["--student_encoder=MobileNetV3small"],
            "unknown encoder 'MobileNetV3small' (close: MobileNetV3Small, MobileNetV3Large, MobileNetV2); choose auto, "
            f"{', '.join(ENCODERS)}, an image model of keras.applications by its name, or module.path:function",
        ),
    ],
)
def test_bad_evaluation_input_is_one_line_and_exit_2(pretrained_run, mnist_subset, entry_point, flags, message):
    model_dir, _ = pretrained_run
    flags = [flag.format(export=model_dir / "export", run=model_dir) for flag in flags]
    result = _run(entry_point, *flags, f"--dataset={mnist_subset}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert (
        result.stderr.strip().splitlines()[-1] == f"error: {message}"
        or message in result.stderr.strip().splitlines()[-1]
    )
