"""The README stays true: its Python blocks run, and its commands and flag table match
the real flags of `experiments.pretrain`."""

import re

import numpy as np
import pytest
from absl import flags

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


@pytest.fixture(scope="module")
def pretrain_flags():
    import experiments.pretrain  # noqa: F401  (defines the flags)

    return flags.FLAGS


def test_every_flag_in_the_commands_exists(pretrain_flags):
    commands = " ".join(re.findall(r"```bash\n(.*?)```", README, re.S))
    used = set(re.findall(r"--([a-z_]+)", commands))
    assert used and used <= set(pretrain_flags)


def test_flag_table_lists_every_flag_with_its_default(pretrain_flags):
    rows = dict(re.findall(r"^\| `--([a-z_]+)` \| ([^|]+) \|", README, re.M))
    ours = {flag.name for flag in pretrain_flags.get_flags_for_module("experiments.pretrain")}
    assert set(rows) == ours
    for name, default in rows.items():
        documented = re.fullmatch(r"`(.*)`", default.strip())
        if documented:  # a literal default; prose like "TFDS default" describes a None
            actual = pretrain_flags[name].default
            if isinstance(actual, float):
                assert float(documented.group(1)) == actual, name
            else:
                assert documented.group(1) == str(actual), name
