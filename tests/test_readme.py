"""The README stays true: its Python blocks run, and its commands and flag table match
the real flags of `experiments.pretrain`."""

import re
import subprocess
import sys
from xml.etree import ElementTree

import numpy as np
import pytest

from conftest import ROOT
from contrastive_tf.encoders import build_encoder
from contrastive_tf.export import export_encoder

README = (ROOT / "README.md").read_text()


def _python_block(heading: str) -> str:
    return re.search(rf"{re.escape(heading)}.*?```python\n(.*?)```", README, re.S).group(1)


def test_python_quickstart_runs():
    namespace: dict = {}
    exec(compile(_python_block("### Python"), "README.md", "exec"), namespace)
    assert tuple(namespace["h"].shape) == (8, 256)


def test_loading_the_export_runs(tmp_path):
    export_dir = export_encoder(build_encoder("small_cnn", (28, 28, 1), 0.25), tmp_path / "export", (28, 28, 1))
    code = _python_block("## Using the export in another app").replace("runs/simclr/export", str(export_dir))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["h"].shape == (4, 64)
    np.testing.assert_allclose(namespace["h"], namespace["h_again"], rtol=1e-6)


ENTRY_POINTS = ("pretrain", "benchmark", "linear_eval", "knn_eval", "finetune", "distill", "quality")
# Flags the evaluation entry points share, defined in experiments/eval_common.py.
SHARED = "eval_common"


@pytest.fixture(scope="module")
def entry_point_flags() -> dict[str, dict[str, str]]:
    """Each entry point's own (and shared) flags and their defaults, as absl's --helpxml
    reports them; one process each, since several define --batch_size."""
    commands = {
        entry_point: subprocess.Popen(
            [sys.executable, "-m", f"experiments.{entry_point}", "--helpxml"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for entry_point in ENTRY_POINTS
    }
    found = {}
    for entry_point, process in commands.items():
        xml = process.communicate(timeout=300)[0]
        found[entry_point] = {
            flag.findtext("name"): flag.findtext("default")
            for flag in ElementTree.fromstring(xml).iter("flag")
            if flag.findtext("file").endswith((f"experiments/{entry_point}.py", f"experiments.{SHARED}"))
        }
    return found


def _table_rows(heading: str) -> dict[str, str]:
    section = re.search(rf"## {re.escape(heading)}\n(.*?)\n## ", README, re.S).group(1)
    return dict(re.findall(r"^\| `--([a-z_0-9]+)` \| ([^|]+) \|", section, re.M))


def _flag_table(entry_point: str) -> dict[str, str]:
    rows = _table_rows(f"`python -m experiments.{entry_point}` flags")
    if entry_point in ("linear_eval", "knn_eval", "finetune", "distill"):
        shared = _table_rows("Evaluation flags")
        only_encoders = ("encoder_path", "label_fraction")  # distill takes a teacher on all the images
        rows |= {name: value for name, value in shared.items() if entry_point != "distill" or name not in only_encoders}
    return rows


def test_every_flag_in_the_commands_exists(entry_point_flags):
    for entry_point in ENTRY_POINTS:
        one_line = README.replace("\\\n", " ")  # join shell continuation lines
        commands = " ".join(re.findall(rf"python -m experiments.{entry_point}([^\n]*)", one_line))
        used = set(re.findall(r"--([a-z_0-9]+)", commands))
        assert used and used <= set(entry_point_flags[entry_point]), entry_point


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_flag_table_lists_every_flag_with_its_default(entry_point_flags, entry_point):
    rows, actual = _flag_table(entry_point), entry_point_flags[entry_point]
    assert set(rows) == set(actual)
    for name, default in rows.items():
        documented = re.fullmatch(r"`(.*)`", default.strip())
        if documented:  # a literal default; prose like "TFDS default" describes a None
            try:
                assert float(documented.group(1)) == float(actual[name]), name
            except ValueError:
                assert documented.group(1) == actual[name], name
