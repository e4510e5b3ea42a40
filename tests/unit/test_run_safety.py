"""A run stops cleanly on SIGTERM or SIGINT, and one run at a time trains into a model_dir."""

import json
import os
import signal
import socket
import subprocess
import sys

import keras
import pytest

from contrastive_tf import run_folder
from contrastive_tf.checkpoints import latest_step
from contrastive_tf.config import PretrainConfig
from contrastive_tf.errors import Preempted, UsageError
from contrastive_tf.pretraining import build_model, fit, prepare
from contrastive_tf.run_folder import RunLock


def _run(mnist_subset, model_dir, **settings):
    config = PretrainConfig(
        dataset=str(mnist_subset), width=0.25, batch_size=500, epochs=2, knn_every_epochs=0, precision="float32",
        model_dir=str(model_dir), verbose=0, **settings,
    )  # fmt: skip
    run = prepare(config)
    return run, build_model(run)


class _SignalAtStep(keras.callbacks.Callback):
    def __init__(self, step, number):
        super().__init__()
        self.step, self.number = step, number

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.step:
            os.kill(os.getpid(), self.number)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_the_rerun_resumes_there(
    number, mnist_subset, tmp_path, monkeypatch
):
    run, model = _run(mnist_subset, tmp_path, checkpoint_every_steps=100)
    fit_with = model.fit

    def fit_signalled(*args, callbacks, **kwargs):  # the signal comes before the step's checks
        return fit_with(*args, callbacks=[_SignalAtStep(3, number), *callbacks], **kwargs)

    monkeypatch.setattr(model, "fit", fit_signalled)
    with pytest.raises(Preempted, match=rf"stopped by {signal.Signals(number).name} after step 3, .*rerun the same"):
        fit(run, model)
    assert latest_step(tmp_path / run_folder.CHECKPOINTS_DIR) == 3
    assert signal.getsignal(number) is not None and not (tmp_path / run_folder.LOCK_FILE).exists()
    rerun, model = _run(mnist_subset, tmp_path)
    history = fit(rerun, model)
    assert int(model.optimizer.iterations) == 2 * rerun.steps_per_epoch and len(history["loss"]) == 2


def test_a_model_dir_in_use_by_a_live_process_is_refused_naming_it(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": other.pid, "host": socket.gethostname(), "command": "python -m experiments.pretrain", "since": 0}
        (tmp_path / run_folder.LOCK_FILE).write_text(json.dumps(lock))
        with pytest.raises(UsageError, match=rf"in use by process {other.pid} on .*python -m experiments.pretrain"):
            with RunLock(tmp_path):
                pass
    finally:
        other.kill()
        other.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over_and_said(tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / run_folder.LOCK_FILE).write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname()}))
    with RunLock(tmp_path):
        assert json.loads((tmp_path / run_folder.LOCK_FILE).read_text())["pid"] == os.getpid()
        with RunLock(tmp_path):  # the same process may nest it
            pass
        assert (tmp_path / run_folder.LOCK_FILE).exists()
    assert f"left by process {gone.pid}" in caplog.text and "no longer running" in caplog.text
    assert not (tmp_path / run_folder.LOCK_FILE).exists()


def test_a_lock_from_another_machine_is_live_until_its_heartbeat_stops(tmp_path):
    path = tmp_path / run_folder.LOCK_FILE
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": 0}))
    with pytest.raises(UsageError, match="in use by process 1 on elsewhere"):
        with RunLock(tmp_path):
            pass
    os.utime(path, (0, 0))  # no heartbeat for decades
    with RunLock(tmp_path):
        pass
