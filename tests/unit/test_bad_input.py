"""Every kind of bad input the issue lists, through `python -m experiments.pretrain`: one
line on stderr naming the problem and the fix, exit 2 for usage errors, no traceback, and
nothing half-written left behind."""

import pathlib
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from contrastive_tf.config import PretrainConfig
from contrastive_tf.errors import UsageError
from contrastive_tf.pretraining import prepare
from contrastive_tf.run_folder import MODEL_FILE


def _run(*flags, timeout=180):
    command = [sys.executable, "-m", "experiments.pretrain", *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _png(path: pathlib.Path, array: np.ndarray) -> None:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(array).numpy())


def _npz(path: pathlib.Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


# Each builder makes the bad input under a folder and returns the settings that use it.
CASES = {
    # Settings.
    "unknown data set": (lambda d: dict(dataset="imagenet42"), "unknown dataset 'imagenet42'"),
    "unknown strategy": (lambda d: dict(strategy="horovod"), "unknown strategy 'horovod'; choose one of"),
    "unknown precision": (lambda d: dict(precision="fp8"), "unknown precision 'fp8'; choose one of"),
    "unknown encoder": (lambda d: dict(encoder="vgg16"), "unknown encoder 'vgg16' (close: VGG16, VGG19); choose auto"),
    "unknown method": (lambda d: dict(method="swav"), "unknown method 'swav'; choose one of"),
    "batch size 0": (lambda d: dict(batch_size=0), "batch_size must be >= 2"),
    "batch size 1": (lambda d: dict(batch_size=1), "batch_size must be >= 2"),
    "epochs 0": (lambda d: dict(epochs=0), "epochs must be >= 1"),
    "temperature 0": (lambda d: dict(temperature=0), "temperature must be > 0"),
    "negative temperature": (lambda d: dict(temperature=-0.5), "temperature must be > 0"),
    "negative learning rate": (lambda d: dict(learning_rate=-1), "learning_rate must be > 0"),
    "1 image per replica": (lambda d: dict(strategy="mirrored", batch_size=2), "gives 1 image(s) per replica"),
    "batch not divisible by replicas": (
        lambda d: dict(strategy="mirrored", batch_size=5),
        "does not divide by the 2 replicas",
    ),
    "image size too small for the crop": (lambda d: dict(image_size=4), "image_size must be >= 8"),
    "one view": (lambda d: dict(num_views=1), "num_views must be >= 2"),
    "three views for a two-view method": (
        lambda d: dict(method="byol", num_views=3),
        "byol compares two views, got num_views=3",
    ),
    "a setting the method does not have": (
        lambda d: dict(method="byol", temperature=0.5),
        "byol does not use temperature",
    ),
    "momentum above 1": (lambda d: dict(method="moco", target_momentum=1.5), "target_momentum must be in [0, 1]"),
    "queue shorter than a batch": (
        lambda d: dict(method="moco", queue_size=100, batch_size=128),
        "queue_size (100) must be >= batch_size (128)",
    ),
    "existing export": (lambda d: (d.parent / "run" / "export").mkdir(parents=True) or {}, "already exists"),
    # Data.
    "missing path": (lambda d: dict(dataset=f"{d}/no/such/folder/"), "does not exist"),
    "empty folder": (lambda d: (d / "empty").mkdir() or dict(dataset=str(d / "empty")), "no images"),
    "folder without images": (
        lambda d: (d / "notes").mkdir() or (d / "notes" / "a.txt").write_text("hi") and dict(dataset=str(d / "notes")),
        "no images",
    ),
    "folder of corrupt images only": (
        lambda d: (d / "bad").mkdir() or (d / "bad" / "a.png").write_bytes(b"junk") and dict(dataset=str(d / "bad")),
        "can be decoded",
    ),
    "npz without x_train": (
        lambda d: dict(dataset=_npz(d / "a.npz", images=np.zeros((4, 8, 8), np.uint8))),
        "has no x_train array (found: images)",
    ),
    "npz of the wrong dtype": (
        lambda d: dict(dataset=_npz(d / "b.npz", x_train=np.full((4, 8, 8), 300, np.int32))),
        "x_train has dtype int32",
    ),
    "npz of the wrong rank": (
        lambda d: dict(dataset=_npz(d / "c.npz", x_train=np.zeros((4, 8), np.uint8))),
        "x_train has shape (4, 8)",
    ),
    "labels that do not match the images": (
        lambda d: dict(
            dataset=_npz(d / "e.npz", x_train=np.zeros((10, 8, 8), np.uint8), y_train=np.zeros(9, np.int64))
        ),
        "y_train has 9 labels for 10 images",
    ),
    "npz that needs pickle": (
        lambda d: dict(dataset=_npz(d / "f.npz", x_train=np.array([{"a": 1}], dtype=object))),
        "not a readable .npz file",
    ),
    "not an npz at all": (
        lambda d: (d / "g.npz").write_text("plain text") and dict(dataset=str(d / "g.npz")),
        "not a readable .npz file",
    ),
    "fewer images than one batch": (
        lambda d: dict(dataset=_npz(d / "h.npz", x_train=np.zeros((10, 8, 8), np.uint8))),
        "fewer than one batch of 128",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_naming_the_problem_and_leaves_nothing_behind(case, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_settings, message = CASES[case]
    model_dir = tmp_path / "run"
    with pytest.raises(UsageError) as raised:
        prepare(PretrainConfig(**{**make_settings(data), "model_dir": str(model_dir)}))
    assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert not (model_dir / MODEL_FILE).exists() and not list((model_dir / "export").glob("*"))


def test_the_command_line_prints_a_usage_error_as_one_line_and_exits_2(tmp_path):
    result = _run("--batch_size=1", f"--model_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: batch_size must be >= 2, got 1"
    assert "Traceback" not in result.stderr


def test_the_command_line_names_a_bad_flag_value_and_a_stray_argument_in_one_line(tmp_path):
    for flags, message in [
        (["--strategy=horovod"], "error: flag --strategy=horovod: value should be one of"),
        (["stray_argument"], "error: unexpected arguments stray_argument; every option is a --flag"),
    ]:
        result = _run(*flags, f"--model_dir={tmp_path}")
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(message), result.stderr


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_no_room_to_write_a_checkpoint_stops_with_one_line_and_the_rerun_completes(tmp_path):
    """A file-size limit below one checkpoint makes its write fail midway, as a full disk does."""
    flags = ["--width=0.25", "--epochs=1", "--checkpoint_every_steps=10", f"--model_dir={tmp_path}", "--verbose=0"]
    command = [sys.executable, "-m", "experiments.pretrain", *flags]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(300_000)
    )
    assert result.returncode == 1, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: no room to write (File too large)") and "rerun the same command" in last_line
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "checkpoints").iterdir()) == []  # no half-written checkpoint, no index
    assert not (tmp_path / "export").exists() and not (tmp_path / "model.keras").exists()

    rerun = _run(*flags, timeout=300)  # room again
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (tmp_path / "export" / "saved_model.pb").exists()
