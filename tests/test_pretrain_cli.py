"""`python -m experiments.pretrain` end to end: usage errors, a real MNIST run, kill and resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT


def _command(*flags):
    return [sys.executable, "-m", "experiments.pretrain", *flags]


def _run(*flags, timeout=600):
    return subprocess.run(_command(*flags), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset=imagenet42"], "unknown dataset 'imagenet42'"),
        (["--dataset=/no/such/folder/"], "does not exist"),
        (["--batch_size=1"], "batch_size must be >= 2"),
        (["--temperature=0"], "temperature must be > 0"),
        (["--epochs=0"], "epochs must be >= 1"),
        (["--encoder=vgg16"], "encoder"),
        (["--strategy=mirrored", "--cpu_replicas=2", "--batch_size=5"], "does not divide by the 2 replicas"),
        (["--learning_rate=-1"], "learning_rate must be > 0"),
        (["stray_argument"], "unexpected arguments"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_no_traceback(flags, message, tmp_path):
    result = _run(*flags, f"--model_dir={tmp_path}", timeout=120)
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and message in last_line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "export").exists()


def test_existing_export_is_refused_before_training(tmp_path):
    (tmp_path / "export").mkdir()
    result = _run(f"--model_dir={tmp_path}", timeout=120)
    assert result.returncode == 2
    assert "already exists; pass --overwrite" in result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_short_mnist_run_beats_random_weights_and_exports(mnist_subset, tmp_path):
    result = _run(f"--dataset={mnist_subset}", "--epochs=4", "--batch_size=200", f"--model_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    probe = re.search(r"learned ([\d.]+)% \| random weights ([\d.]+)%", result.stdout)
    learned, random_weights = float(probe.group(1)), float(probe.group(2))
    assert learned > random_weights + 3.0, result.stdout
    export = re.search(r"SavedModel: (\S+)", result.stdout).group(1)
    assert os.path.exists(os.path.join(export, "saved_model.pb"))
    metadata = json.loads(open(os.path.join(export, "export_metadata.json")).read())
    assert metadata["linear_probe_top1"] == pytest.approx(learned / 100, abs=1e-4)
    for name in ("views.png", "training_curves.png", "simclr.keras", "history.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert any((tmp_path / "logs" / "train").iterdir())  # TensorBoard events


def _epoch_saved(checkpoints):
    metadata = checkpoints / "training_metadata.json"
    try:
        return json.loads(metadata.read_text())["epoch"]
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(mnist_subset, tmp_path):
    flags = [f"--dataset={mnist_subset}", "--epochs=3", "--batch_size=250", "--width=0.5", f"--model_dir={tmp_path}"]
    process = subprocess.Popen(_command(*flags), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _epoch_saved(tmp_path / "checkpoints") < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "export").exists()
    epochs_before_kill = _epoch_saved(tmp_path / "checkpoints")

    resumed = _run(*flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # Keras' progress bar shows where the resumed fit started.
    first_epoch = int(re.search(r"Epoch (\d+)/3", resumed.stdout).group(1))
    assert first_epoch == epochs_before_kill + 1
    rows = np.genfromtxt(tmp_path / "history.csv", delimiter=",", names=True)
    assert sorted(set(rows["epoch"].astype(int))) == [0, 1, 2]
    assert (tmp_path / "export" / "saved_model.pb").exists()


@pytest.mark.slow
def test_mirrored_run_on_two_cpu_replicas_in_bfloat16_exports(mnist_subset, tmp_path):
    result = _run(
        f"--dataset={mnist_subset}",
        "--strategy=mirrored",
        "--cpu_replicas=2",
        "--precision=mixed_bfloat16",
        "--epochs=1",
        "--batch_size=500",
        "--width=0.5",
        f"--model_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "learned" in result.stdout and (tmp_path / "export" / "saved_model.pb").exists()
    metadata = json.loads((tmp_path / "export" / "export_metadata.json").read_text())
    assert metadata["config"]["strategy"] == "mirrored" and metadata["final_loss"] > 0
