"""Every kind of bad input the issue lists, through `python -m experiments.pretrain`: one
line on stderr naming the problem and the fix, exit 2 for usage errors, no traceback, and
nothing half-written left behind."""

import json
import pathlib
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT


def _run(*flags, timeout=180):
    command = [sys.executable, "-m", "experiments.pretrain", *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _png(path: pathlib.Path, array: np.ndarray) -> None:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(array).numpy())


def _npz(path: pathlib.Path, **arrays) -> pathlib.Path:
    np.savez(path, **arrays)
    return path


# Each builder makes the bad input under a folder and returns the flags that use it.
CASES = {
    # Flags.
    "unknown data set": (lambda d: ["--dataset=imagenet42"], "unknown dataset 'imagenet42'"),
    "unknown strategy": (lambda d: ["--strategy=horovod"], "flag --strategy=horovod: value should be one of"),
    "unknown precision": (lambda d: ["--precision=fp8"], "flag --precision=fp8: value should be one of"),
    "unknown encoder": (lambda d: ["--encoder=vgg16"], "flag --encoder=vgg16: value should be one of"),
    "stray argument": (lambda d: ["stray_argument"], "unexpected arguments stray_argument"),
    "batch size 0": (lambda d: ["--batch_size=0"], "batch_size must be >= 2"),
    "batch size 1": (lambda d: ["--batch_size=1"], "batch_size must be >= 2"),
    "epochs 0": (lambda d: ["--epochs=0"], "epochs must be >= 1"),
    "temperature 0": (lambda d: ["--temperature=0"], "temperature must be > 0"),
    "negative temperature": (lambda d: ["--temperature=-0.5"], "temperature must be > 0"),
    "negative learning rate": (lambda d: ["--learning_rate=-1"], "learning_rate must be > 0"),
    "1 image per replica": (
        lambda d: ["--strategy=mirrored", "--cpu_replicas=2", "--batch_size=2"],
        "gives 1 image(s) per replica",
    ),
    "batch not divisible by replicas": (
        lambda d: ["--strategy=mirrored", "--cpu_replicas=2", "--batch_size=5"],
        "does not divide by the 2 replicas",
    ),
    "image size too small for the crop": (lambda d: ["--image_size=4"], "image_size must be >= 8"),
    "unknown method": (lambda d: ["--method=swav"], "flag --method=swav: value should be one of"),
    "one view": (lambda d: ["--num_views=1"], "num_views must be >= 2"),
    "three views for a two-view method": (
        lambda d: ["--method=byol", "--num_views=3"],
        "byol compares two views, got num_views=3",
    ),
    "momentum above 1": (lambda d: ["--method=moco", "--target_momentum=1.5"], "target_momentum must be in [0, 1]"),
    "queue shorter than a batch": (
        lambda d: ["--method=moco", "--queue_size=100", "--batch_size=128"],
        "queue_size (100) must be >= batch_size (128)",
    ),
    # Data.
    "missing path": (lambda d: [f"--dataset={d}/no/such/folder/"], "does not exist"),
    "empty folder": (lambda d: (d / "empty").mkdir() or [f"--dataset={d / 'empty'}"], "no images"),
    "folder without images": (
        lambda d: (d / "notes").mkdir() or (d / "notes" / "a.txt").write_text("hi") and [f"--dataset={d / 'notes'}"],
        "no images",
    ),
    "folder of corrupt images only": (
        lambda d: (d / "bad").mkdir() or (d / "bad" / "a.png").write_bytes(b"junk") and [f"--dataset={d / 'bad'}"],
        "can be decoded",
    ),
    "npz without x_train": (
        lambda d: [f"--dataset={_npz(d / 'a.npz', images=np.zeros((4, 8, 8), np.uint8))}"],
        "has no x_train array (found: images)",
    ),
    "npz of the wrong dtype": (
        lambda d: [f"--dataset={_npz(d / 'b.npz', x_train=np.full((4, 8, 8), 300, np.int32))}"],
        "x_train has dtype int32",
    ),
    "npz of the wrong rank": (
        lambda d: [f"--dataset={_npz(d / 'c.npz', x_train=np.zeros((4, 8), np.uint8))}"],
        "x_train has shape (4, 8)",
    ),
    "labels that do not match the images": (
        lambda d: [
            f"--dataset={_npz(d / 'e.npz', x_train=np.zeros((10, 8, 8), np.uint8), y_train=np.zeros(9, np.int64))}"
        ],
        "y_train has 9 labels for 10 images",
    ),
    "npz that needs pickle": (
        lambda d: [f"--dataset={_npz(d / 'f.npz', x_train=np.array([{'a': 1}], dtype=object))}"],
        "not a readable .npz file",
    ),
    "not an npz at all": (
        lambda d: (d / "g.npz").write_text("plain text") and [f"--dataset={d / 'g.npz'}"],
        "not a readable .npz file",
    ),
    "fewer images than one batch": (
        lambda d: [f"--dataset={_npz(d / 'h.npz', x_train=np.zeros((10, 8, 8), np.uint8))}"],
        "fewer than one batch of 256",
    ),
}


# These need logical CPU devices, which a process can set only before it first uses one.
OWN_PROCESS = ("1 image per replica", "batch not divisible by replicas")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[int, str, pathlib.Path]]:
    """Each case's exit status, stderr and model_dir. All but OWN_PROCESS run in one
    process through tests/cli_driver.py, which calls the entry point as the shell does."""
    root = tmp_path_factory.mktemp("bad_input")
    argvs = {}
    for index, (case, (make_flags, _)) in enumerate(CASES.items()):
        data = root / f"{index}" / "data"
        data.mkdir(parents=True)
        argvs[case] = [*make_flags(data), f"--model_dir={data.parent / 'run'}"]
    shared = [case for case in CASES if case not in OWN_PROCESS]
    (root / "cases.json").write_text(json.dumps([argvs[case] for case in shared]))
    driver = [sys.executable, str(ROOT / "tests" / "cli_driver.py"), "experiments.pretrain"]
    subprocess.run([*driver, root / "cases.json", root / "results.json"], cwd=ROOT, check=True, timeout=600)
    found = dict(zip(shared, json.loads((root / "results.json").read_text())))
    for case in OWN_PROCESS:
        result = _run(*argvs[case])
        found[case] = {"code": result.returncode, "stderr": result.stderr}
    return {
        case: (found[case]["code"], found[case]["stderr"], root / f"{index}" / "run")
        for index, case in enumerate(CASES)
    }


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing_behind(case, outcomes):
    code, stderr, model_dir = outcomes[case]
    assert code == 2, stderr[-2000:]
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and CASES[case][1] in last_line, last_line
    assert "Traceback" not in stderr
    assert not (model_dir / "export").exists() and not (model_dir / "simclr.keras").exists()


def test_existing_export_is_refused_before_training(tmp_path):
    (tmp_path / "export").mkdir()
    result = _run(f"--model_dir={tmp_path}")
    assert result.returncode == 2
    assert "already exists; pass --overwrite" in result.stderr.strip().splitlines()[-1]
    assert list((tmp_path / "export").iterdir()) == []


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


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
    assert not (tmp_path / "export").exists() and not (tmp_path / "simclr.keras").exists()

    rerun = _run(*flags, timeout=300)  # room again
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (tmp_path / "export" / "saved_model.pb").exists()
