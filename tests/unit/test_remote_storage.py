"""Run folders, checkpoints, exports and results on a `tf.io.gfile` filesystem other than
the local one: `ram://`, TensorFlow's in-memory filesystem, stands in for gs://."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from builders import simclr_model
from contrastive_tf import run_folder, storage
from contrastive_tf.checkpoints import INDEX, TrainingCheckpoint, latest_step, restore
from contrastive_tf.config import PretrainConfig
from contrastive_tf.errors import UsageError
from contrastive_tf.export import export_encoder
from contrastive_tf.history import HistoryLog, read_history
from contrastive_tf.pretraining import build_model, finalize, fit, prepare
from contrastive_tf.reports import report_classification
from contrastive_tf.run_folder import RunLock, load_pretrained


@pytest.fixture
def ram_dir(tmp_path, monkeypatch):
    """A fresh ram:// folder. The working directory is an empty local one, where a path
    mistaken for a local one would appear (as `ram:/...`), and local staging goes to a
    folder of the test's own, which must be left empty."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    folder = f"ram://{tmp_path.name}/run"
    tf.io.gfile.makedirs(folder)
    yield folder
    tf.io.gfile.rmtree(folder)
    assert os.listdir(tmp_path / "cwd") == []
    # TensorFlow's autograph keeps the code it generates there too.
    assert [name for name in os.listdir(tmp_path / "tmp") if not name.startswith("__autograph_generated")] == []


def _config(mnist_subset, model_dir, **settings) -> PretrainConfig:
    settings = {"epochs": 1, **settings}
    return PretrainConfig(
        dataset=str(mnist_subset), width=0.25, batch_size=500, knn_every_epochs=0, precision="float32",
        model_dir=model_dir, verbose=0, **settings,
    )  # fmt: skip


def test_a_path_keeps_its_scheme_and_double_slash():
    assert storage.join("ram://bucket/run/", "checkpoints", "step-2.weights.h5") == (
        "ram://bucket/run/checkpoints/step-2.weights.h5"
    )
    assert storage.parent("ram://bucket") == storage.parent("ram://") == "ram://"
    assert storage.basename("gs://bucket/run/export") == "export"


def test_a_run_trains_stops_resumes_exports_and_loads_on_ram_with_nothing_on_the_local_disk(mnist_subset, ram_dir):
    run = prepare(_config(mnist_subset, ram_dir))
    keras.utils.set_random_seed(0)
    first = fit(run, build_model(run))  # the run stops after its first epoch...
    no_evaluations = {"final_linear_probe": False, "final_knn": False, "final_random_baseline": False}
    longer = prepare(_config(mnist_subset, ram_dir, epochs=2, **no_evaluations))
    model = build_model(longer)
    history = fit(longer, model)  # ...and a rerun with more epochs resumes it
    assert int(model.optimizer.iterations) == 2 * run.steps_per_epoch
    assert len(history["loss"]) == 2 and history["loss"][0] == first["loss"][0]

    result = finalize(longer, model, history)
    assert result.export_path == f"{ram_dir}/{run_folder.EXPORT_DIR}"
    held = set(tf.io.gfile.listdir(ram_dir))
    for name in (run_folder.MODEL_FILE, run_folder.HISTORY_FILE, run_folder.VIEWS_FIGURE, run_folder.CURVES_FIGURE):
        assert name in held and tf.io.gfile.stat(f"{ram_dir}/{name}").length > 0
    assert tf.io.gfile.glob(f"{ram_dir}/{run_folder.LOGS_DIR}/train/events.out.tfevents.*")
    assert latest_step(f"{ram_dir}/{run_folder.CHECKPOINTS_DIR}") == 2 * run.steps_per_epoch
    assert run_folder.LOCK_FILE not in held

    exported = load_pretrained(result.export_path)
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    expected = model.encoder(images, training=False).numpy()
    np.testing.assert_allclose(exported.encoder(images).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert exported.metadata["epochs_trained"] == 2
    whole = load_pretrained(ram_dir)
    np.testing.assert_allclose(whole.model.encoder(images, training=False).numpy(), expected, rtol=1e-6)


def _two_checkpoints(directory):
    """A model trained 4 steps with a checkpoint every 2: step-2 and step-4 in `directory`."""
    model = simclr_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(tf.data.Dataset.from_tensors(np.zeros((8, 28, 28, 1), np.uint8)).repeat(4), epochs=1, verbose=0,
              callbacks=[TrainingCheckpoint(directory, every_steps=2)])  # fmt: skip
    return model


def _restorable():
    model = simclr_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


def test_a_damaged_newest_checkpoint_on_ram_falls_back_to_the_previous_one(ram_dir, caplog):
    trained = _two_checkpoints(ram_dir)
    assert sorted(tf.io.gfile.listdir(ram_dir)) == [INDEX, "step-2.weights.h5", "step-4.weights.h5"]
    restored = _restorable()
    assert restore(restored, ram_dir) == 4
    for expected, actual in zip(trained.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(actual, expected)
    newest = f"{ram_dir}/step-4.weights.h5"
    with tf.io.gfile.GFile(newest, "rb") as file:
        half = file.read()[: tf.io.gfile.stat(newest).length // 2]
    tf.io.gfile.remove(newest)  # ram:// appends to a file written over
    with tf.io.gfile.GFile(newest, "wb") as file:
        file.write(half)
    assert latest_step(ram_dir) == 2
    assert "step-4.weights.h5 is damaged" in caplog.text and "step-2.weights.h5 (step 2)" in caplog.text
    assert restore(_restorable(), ram_dir) == 2


def test_history_on_ram_keeps_every_epoch_across_a_resume_and_the_repeat_of_an_epoch(ram_dir):
    path = f"{ram_dir}/{run_folder.HISTORY_FILE}"
    HistoryLog(path).on_epoch_end(0, {"loss": 3.0})
    resumed = HistoryLog(path)  # a rerun repeats epoch 1, whose checkpoint was lost
    resumed.on_epoch_end(1, {"loss": 2.0})
    resumed.on_epoch_end(1, {"loss": 1.5, "knn_top1": 0.5})
    assert storage.read_text(path).splitlines()[0] == "epoch,knn_top1,loss"
    assert read_history(path) == {"loss": [3.0, 1.5]}


def test_the_lock_on_ram_refuses_a_live_run_and_takes_over_a_stale_one(ram_dir, caplog):
    path = f"{ram_dir}/{run_folder.LOCK_FILE}"
    with RunLock(ram_dir, settle=0):
        assert json.loads(storage.read_text(path))["pid"] == os.getpid()
        with RunLock(ram_dir, settle=0):  # the same process may nest it
            pass
        assert tf.io.gfile.exists(path)
    assert not tf.io.gfile.exists(path)

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        storage.write_text(path, json.dumps({"pid": other.pid, "host": socket.gethostname(), "command": "pretrain"}))
        with pytest.raises(UsageError, match=rf"in use by process {other.pid} on .*pretrain"):
            with RunLock(ram_dir, settle=0):
                pass
    finally:
        other.kill()
        other.wait()
    # Another machine's lock lives while its heartbeat does; ram:// keeps no file times.
    storage.write_text(path, json.dumps({"pid": 1, "host": "elsewhere", "heartbeat": 0}))
    with RunLock(ram_dir, stale_after=0.2, settle=0):
        time.sleep(0.3)  # a heartbeat every 0.05 s
        held = json.loads(storage.read_text(path))
        assert held["pid"] == os.getpid() and held["heartbeat"] > held["since"]
    assert "left by process 1 on elsewhere" in caplog.text


def test_an_export_on_ram_interrupted_while_copying_is_not_taken_for_a_whole_one(ram_dir, monkeypatch):
    encoder, target = simclr_model().encoder, f"{ram_dir}/export"
    export_encoder(encoder, target, (28, 28, 1), metadata={"image_shape": (28, 28, 1)})
    with pytest.raises(UsageError, match="already exists; set overwrite"):
        export_encoder(encoder, target, (28, 28, 1))
    copy = tf.io.gfile.copy

    def killed_before_the_marker(source, destination, overwrite=False):
        if destination.endswith("saved_model.pb"):
            raise KeyboardInterrupt
        copy(source, destination, overwrite)

    monkeypatch.setattr(tf.io.gfile, "copy", killed_before_the_marker)
    with pytest.raises(KeyboardInterrupt):
        export_encoder(encoder, target, (28, 28, 1), overwrite=True, metadata={"image_shape": (28, 28, 1)})
    assert tf.io.gfile.exists(f"{target}/{run_folder.METADATA_FILE}")
    with pytest.raises(UsageError, match="holds no encoder"):
        load_pretrained(target)


def test_an_evaluation_writes_its_results_and_figures_on_ram(ram_dir):
    labels = np.array([0, 1, 1, 0])
    scores = np.eye(2)[[0, 1, 0, 0]]
    results = report_classification(ram_dir, {"evaluation": "knn"}, labels, scores, np.random.rand(4, 3))
    written = json.loads(storage.read_text(f"{ram_dir}/{run_folder.RESULTS_FILE}"))
    assert written["top1_accuracy"] == results["top1_accuracy"] == 0.75
    for path in results["figures"].values():
        assert path.startswith(ram_dir) and tf.io.gfile.stat(path).length > 0


def test_an_unreachable_model_dir_or_a_missing_encoder_is_one_line(mnist_subset, ram_dir):
    with pytest.raises(UsageError, match=r"cannot reach nosuch://bucket/run \(.*\); check the path"):
        prepare(_config(mnist_subset, "nosuch://bucket/run"))
    with pytest.raises(UsageError, match=f"encoder path {ram_dir}/export does not exist"):
        load_pretrained(f"{ram_dir}/export")
