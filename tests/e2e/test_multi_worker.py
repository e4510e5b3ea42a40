"""`--strategy=multi_worker` on the real engine: two worker processes under TF_CONFIG on
127.0.0.1, as on a cluster of two machines (each sees one CPU device)."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from contrastive_tf.checkpoints import latest_step

# float32 so that the two engines can be compared closely; 10 steps per epoch.
FLAGS = ["--epochs=2", "--batch_size=200", "--width=0.25", "--encoder=small_cnn", "--precision=float32"]
FLAGS += ["--verbose=2", "--checkpoint_every_steps=2"]


@pytest.fixture(scope="module")
def digits(mnist_subset, tmp_path_factory):
    """2,000 unlabelled training digits: no probe at the end, which keeps the runs short."""
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    with np.load(mnist_subset) as mnist:
        np.savez(path, x_train=mnist["x_train"][:2000])
    return path


def _command(data, model_dir, *flags, program=("-m", "experiments.pretrain")):
    return [
        sys.executable,
        *program,
        f"--dataset={data}",
        f"--model_dir={model_dir}",
        *FLAGS,
        *flags,
    ]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(data, *model_dirs, program=("-m", "experiments.pretrain"), env=None, flags=()):
    """One process per model_dir, worker 0 (the chief) first, running `program` with `env`
    added to the environment."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(len(model_dirs))]}
    workers = []
    for index, model_dir in enumerate(model_dirs):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(
            subprocess.Popen(
                _command(data, model_dir, "--strategy=multi_worker", *flags, program=program),
                cwd=ROOT,
                env={**os.environ, **(env or {}), "TF_CONFIG": tf_config},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return workers


def _finish(workers, timeout=300):
    """(returncode, stdout, stderr) of each worker; kills them all if one hangs."""
    try:
        return [(w.wait(timeout), *w.communicate()) for w in workers]
    finally:
        for w in workers:
            w.kill()


def _losses(model_dir):
    return np.genfromtxt(model_dir / "history.csv", delimiter=",", names=True)["loss"]


def _weights(model_dir):
    import keras

    model = keras.saving.load_model(model_dir / "model.keras", safe_mode=True)
    return [w.numpy() for w in model.weights]


def _start_after_a_checkpoint(data, model_dir):
    """Two workers on `model_dir`, returned once the first checkpoint is written."""
    chief, worker = _start_workers(data, model_dir, model_dir)
    deadline = time.monotonic() + 120
    while latest_step(model_dir / "checkpoints") == 0 and chief.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert chief.poll() is None, "the run ended before a checkpoint could be waited for"
    return chief, worker


def _resume_like_the_uninterrupted_run(two_worker_run, data, model_dir, step):
    """Rerun on `model_dir`: it resumes at `step` and ends where the uninterrupted run did
    (the same tolerance as a killed one-process run)."""
    results = _finish(_start_workers(data, model_dir, model_dir))
    for returncode, _, stderr in results:
        assert returncode == 0, stderr[-3000:]
    assert f"resuming from the checkpoint at step {step}" in results[0][1]
    assert sorted(set(np.genfromtxt(model_dir / "history.csv", delimiter=",", names=True)["epoch"])) == [0, 1]
    for whole, resumed in zip(_weights(two_worker_run[0]), _weights(model_dir)):
        if whole.dtype.kind == "f":
            np.testing.assert_allclose(resumed, whole, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(resumed, whole)


@pytest.fixture(scope="module")
def two_worker_run(digits, tmp_path_factory):
    """An uninterrupted two-worker run. Worker 1 is given its own, empty model_dir, so
    that anything it wrote would show there."""
    root = tmp_path_factory.mktemp("multi_worker")
    chief_dir, worker_dir = root / "chief", root / "worker"
    results = _finish(_start_workers(digits, chief_dir, worker_dir))
    for returncode, _, stderr in results:
        assert returncode == 0, stderr[-3000:]
    return chief_dir, worker_dir, results


@pytest.mark.slow
def test_two_workers_train_like_one_process_and_only_the_chief_writes(two_worker_run, digits, tmp_path):
    chief_dir, worker_dir, [(_, chief_out, _), (_, worker_out, _)] = two_worker_run
    assert "SavedModel:" in chief_out and "SavedModel:" not in worker_out
    for name in ("export/saved_model.pb", "model.keras", "history.csv", "checkpoints/checkpoint.json"):
        assert (chief_dir / name).exists(), name
    assert not worker_dir.exists() or not any(worker_dir.iterdir()), list(worker_dir.rglob("*"))

    # One process with the same global batch over two devices: replica 0 takes the first
    # half of each batch and replica 1 the second, on both engines, and each replica draws
    # its views from the seed folded with its replica id. The losses differ only by the
    # order in which the collectives sum.
    single = subprocess.run(
        _command(digits, tmp_path, "--strategy=mirrored", "--cpu_replicas=2"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    # Summed in another order, the losses drift apart over the steps: by 1.8e-4 (relative)
    # in the second epoch on an Intel Xeon with AMX, with the library as it was before the
    # streaming data too; 1e-4 held on the AMD EPYC machines.
    np.testing.assert_allclose(_losses(chief_dir), _losses(tmp_path), rtol=1e-3)


@pytest.mark.slow
def test_a_killed_worker_stops_the_job_and_a_restart_resumes_it(two_worker_run, digits, tmp_path):
    model_dir = tmp_path / "run"
    chief, worker = _start_after_a_checkpoint(digits, model_dir)
    worker.send_signal(signal.SIGKILL)
    # TensorFlow cannot carry on without a worker: the chief stops with one line.
    [(returncode, _, stderr), _] = _finish([chief, worker])
    last_line = stderr.strip().splitlines()[-1]
    assert returncode == 1 and last_line.startswith("error: lost contact with another worker"), stderr[-3000:]
    step = latest_step(model_dir / "checkpoints")
    assert step > 0

    # A worker that cannot see the chief's checkpoints is refused before any training.
    refused = _finish(_start_workers(digits, model_dir, tmp_path / "elsewhere"))
    for returncode, _, stderr in refused:
        assert returncode == 2 and "the workers found different checkpoints" in stderr.strip().splitlines()[-1], stderr[
            -2000:
        ]

    _resume_like_the_uninterrupted_run(two_worker_run, digits, model_dir, step)


# The chief's finishing outlasts the coordination service's shutdown wait (10 s).
SLOW_FINISH = (str(pathlib.Path(__file__).with_name("pretrain_with_slow_finish.py")),)


@pytest.mark.slow
def test_a_run_that_ends_well_reports_no_crash_while_the_chief_finishes(digits, tmp_path):
    workers = _start_workers(
        digits, tmp_path / "chief", tmp_path / "worker", program=SLOW_FINISH, env={"FINISH_SECONDS": "30"}
    )
    for returncode, _, stderr in _finish(workers):
        assert returncode == 0, stderr[-3000:]
        assert "crashed" not in stderr and "heartbeats" not in stderr, stderr[-3000:]
    assert (tmp_path / "chief" / "export" / "saved_model.pb").exists()


@pytest.mark.slow
def test_a_chief_that_fails_while_finishing_is_reported_by_the_other_worker_in_one_line(digits, tmp_path):
    env = {"FINISH_SECONDS": "1", "FINISH_ERROR": "the export failed"}
    workers = _start_workers(digits, tmp_path / "chief", tmp_path / "worker", program=SLOW_FINISH, env=env)
    [(chief_code, _, chief_err), (worker_code, _, worker_err)] = _finish(workers)
    assert chief_code == 2 and chief_err.strip().splitlines()[-1] == "error: the export failed", chief_err[-3000:]
    last_line = worker_err.strip().splitlines()[-1]
    assert worker_code == 1 and last_line.startswith("error: lost contact with another worker"), worker_err[-3000:]


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_after_the_same_step_and_the_rerun_resumes(two_worker_run, digits, tmp_path):
    model_dir = tmp_path / "run"
    chief, worker = _start_after_a_checkpoint(digits, model_dir)
    worker.send_signal(signal.SIGTERM)  # a preempted machine: the signal reaches one worker
    lines = {}
    for name, (returncode, _, stderr) in zip(("chief", "worker"), _finish([chief, worker])):
        # The stop line is the program's last; under load TensorFlow's gRPC teardown can log after it
        # ("Failed to connect to remote host" once the other worker has gone).
        stops = [line for line in stderr.strip().splitlines() if line.startswith("stopped by")]
        lines[name] = stops[-1] if stops else stderr.strip().splitlines()[-1]
        assert returncode == 3, stderr[-3000:]
        assert "crashed" not in stderr, stderr[-3000:]
    step = latest_step(model_dir / "checkpoints")
    assert lines["worker"].startswith(f"stopped by SIGTERM after step {step}, "), lines
    assert lines["chief"].startswith(f"stopped by a signal to another worker after step {step}, "), lines
    assert lines["chief"].endswith("rerun the same command to resume there")

    _resume_like_the_uninterrupted_run(two_worker_run, digits, model_dir, step)


@pytest.mark.slow
def test_two_workers_stream_a_folder_each_reading_its_own_share(tmp_path):
    """Views cropped on the host from images larger than image_size: each worker reads every
    other position of the epoch's permutation (tf.distribute's own sharding is off)."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for index in range(200):
            pixels = rng.integers(0, 256, (40, 48, 3), np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / label / f"{index}.png")
    model_dir = tmp_path / "run"
    workers = _start_workers(tmp_path / "photos", model_dir, tmp_path / "worker", flags=("--image_size=28",))
    for returncode, _, stderr in _finish(workers):
        assert returncode == 0, stderr[-3000:]
    losses = _losses(model_dir)
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    card = json.loads((model_dir / "export" / "model_card.json").read_text())
    assert card["views"].startswith("each cropped on the host") and card["unreadable_files_skipped"] == 0
