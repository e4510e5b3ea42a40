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


ENTRY_POINTS = ("pretrain", "benchmark")


@pytest.fixture(scope="module")
def entry_point_flags() -> dict[str, dict[str, str]]:
    """Each entry point's own flags and their defaults, as absl's --helpxml reports them
    (the two cannot share one process: both define --batch_size)."""
    found = {}
    for entry_point in ENTRY_POINTS:
        xml = subprocess.run(
            [sys.executable, "-m", f"experiments.{entry_point}", "--helpxml"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        found[entry_point] = {
            flag.findtext("name"): flag.findtext("default")
            for flag in ElementTree.fromstring(xml).iter("flag")
            if flag.findtext("file").endswith(f"experiments/{entry_point}.py")
        }
    return found


def _flag_table(entry_point: str) -> dict[str, str]:
    section = re.search(rf"## `python -m experiments.{entry_point}` flags\n(.*?)\n## ", README, re.S).group(1)
    return dict(re.findall(r"^\| `--([a-z_]+)` \| ([^|]+) \|", section, re.M))


def test_every_flag_in_the_commands_exists(entry_point_flags):
    for entry_point in ENTRY_POINTS:
        one_line = README.replace("\\\n", " ")  # join shell continuation lines
        commands = " ".join(re.findall(rf"python -m experiments.{entry_point}([^\n]*)", one_line))
        used = set(re.findall(r"--([a-z_]+)", commands))
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
