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
from contrastive_tf.checkpoints import latest_step


def _command(*flags):
    return [sys.executable, "-m", "experiments.pretrain", *flags]


def _run(*flags, timeout=600):
    return subprocess.run(_command(*flags), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_short_mnist_run_beats_random_weights_and_exports(pretrained_run):
    tmp_path, result = pretrained_run
    probe = re.search(r"learned ([\d.]+)% \| random weights ([\d.]+)%", result.stdout)
    learned, random_weights = float(probe.group(1)), float(probe.group(2))
    assert learned > random_weights + 3.0, result.stdout
    export = re.search(r"SavedModel: (\S+)", result.stdout).group(1)
    assert os.path.exists(os.path.join(export, "saved_model.pb"))
    metadata = json.loads(open(os.path.join(export, "model_card.json")).read())
    assert metadata["linear_probe_top1"] == pytest.approx(learned / 100, abs=1e-4)
    for name in ("views.png", "training_curves.png", "model.keras", "history.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert any((tmp_path / "logs" / "train").iterdir())  # TensorBoard events


def _weights(model_dir):
    import keras

    model = keras.saving.load_model(model_dir / "model.keras", safe_mode=True)
    return [w.numpy() for w in model.weights]


@pytest.mark.slow
def test_run_killed_at_random_moments_ends_like_an_uninterrupted_one(mnist_subset, tmp_path):
    """kill -9 three times at random moments (mid-epoch, mid-checkpoint, anywhere), rerun
    the same command each time, and the run ends where an uninterrupted one does.

    Resuming restores weights, optimizer state, step and seed counters, and skips the
    batches already trained on, so the same steps run on the same views. Tolerance: the
    weights agree to 1e-4 relative; the steps repeated after a kill (those after the last
    checkpoint) give the same results but oneDNN's threaded kernels may round differently.
    """
    common = [f"--dataset={mnist_subset}", "--epochs=2", "--batch_size=250", "--width=0.25", "--verbose=2"]
    common += ["--checkpoint_every_steps=3", "--encoder=small_cnn"]
    uninterrupted = _run(*common, f"--model_dir={tmp_path / 'whole'}")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    model_dir = tmp_path / "killed"
    rng = np.random.default_rng(int(time.time()))
    kills, finished = 0, False
    while kills < 3:
        process = subprocess.Popen(
            _command(*common, f"--model_dir={model_dir}"),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        step = latest_step(model_dir / "checkpoints")
        deadline = time.monotonic() + 120
        # Wait for this attempt's first new checkpoint, then kill at a random moment after it.
        while latest_step(model_dir / "checkpoints") == step and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        if process.poll() is not None:  # it finished before this kill
            finished = process.returncode == 0
            break
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    assert kills >= 2, "the run was too quick to be killed twice"
    if not finished:
        resumed = _run(*common, f"--model_dir={model_dir}")
        assert resumed.returncode == 0, resumed.stderr[-3000:]

    rows = np.genfromtxt(model_dir / "history.csv", delimiter=",", names=True)
    assert sorted(set(rows["epoch"].astype(int))) == [0, 1]
    assert (model_dir / "export" / "saved_model.pb").exists()
    for whole, killed in zip(_weights(tmp_path / "whole"), _weights(model_dir)):
        if whole.dtype.kind == "f":
            np.testing.assert_allclose(killed, whole, rtol=1e-4, atol=1e-5)
        else:  # step and seed counters: exact
            np.testing.assert_array_equal(killed, whole)


def _wait_for(condition, process, seconds=180):
    deadline = time.monotonic() + seconds
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_3_and_the_rerun_ends_like_an_uninterrupted_run(mnist_subset, tmp_path):
    common = [f"--dataset={mnist_subset}", "--epochs=2", "--batch_size=250", "--width=0.25", "--verbose=2"]
    common += ["--checkpoint_every_steps=5", "--encoder=small_cnn", "--knn_every_epochs=0"]
    uninterrupted = _run(*common, f"--model_dir={tmp_path / 'whole'}")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    model_dir = tmp_path / "preempted"
    process = subprocess.Popen(
        _command(*common, f"--model_dir={model_dir}"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: latest_step(model_dir / "checkpoints") > 0, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stderr[-3000:]
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("stopped by SIGTERM after step ") and "rerun the same command" in last_line
    step = int(last_line.split("after step ")[1].split(",")[0])
    assert latest_step(model_dir / "checkpoints") == step and "Traceback" not in stderr

    resumed = _run(*common, f"--model_dir={model_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for whole, preempted in zip(_weights(tmp_path / "whole"), _weights(model_dir)):
        if whole.dtype.kind == "f":
            np.testing.assert_allclose(preempted, whole, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(preempted, whole)


@pytest.mark.slow
def test_a_second_run_on_a_model_dir_in_use_is_refused_naming_the_first(mnist_subset, tmp_path):
    flags = [f"--dataset={mnist_subset}", "--epochs=50", "--width=0.25", f"--model_dir={tmp_path}", "--verbose=0"]
    first = subprocess.Popen(_command(*flags), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (tmp_path / ".lock").exists(), first)
        second = _run(*flags, timeout=120)
        assert second.returncode == 2
        last_line = second.stderr.strip().splitlines()[-1]
        assert last_line.startswith("error: ") and f"in use by process {first.pid}" in last_line
    finally:
        first.kill()
        first.wait()
