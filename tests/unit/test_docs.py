"""The README and the pages in docs/ stay true: their Python blocks run, and every flag
their `python -m experiments.*` commands use is a real flag of that command."""

import dataclasses
import re
import sys
import types

import numpy as np
import pytest

import contrastive_tf
from conftest import ROOT
from contrastive_tf.backbones import APPLICATIONS
from contrastive_tf.encoders import build_encoder
from contrastive_tf.export import export_encoder
from contrastive_tf.methods import METHODS
from experiments import cli_reference

README = (ROOT / "README.md").read_text()
# docs/cli.md is generated from the flags themselves, so its commands need no check here.
GENERATED = ("cli.md",)
PAGES = {"README.md": README} | {
    f"docs/{page.name}": page.read_text() for page in sorted((ROOT / "docs").glob("*.md")) if page.name not in GENERATED
}


def _python_block(heading: str, page: str = "README.md") -> str:
    return re.search(rf"{re.escape(heading)}.*?```python\n(.*?)```", PAGES[page], re.S).group(1)


# The blocks that train on the sample see its first three batches of 256: every line of their
# epoch runs, in seconds rather than a minute and a half.
SHORT_SAMPLE = 768


@pytest.fixture
def short_sample(monkeypatch):
    """`contrastive_tf.load_data` keeping the first SHORT_SAMPLE training images."""

    def load_data(name, *args, **kwargs):
        data = contrastive_tf.data.load_data(name, *args, **kwargs)
        train = contrastive_tf.data.Split(data.train.dataset.take(SHORT_SAMPLE), SHORT_SAMPLE)
        return dataclasses.replace(data, train=train)

    monkeypatch.setattr(contrastive_tf, "load_data", load_data)


def test_python_quickstart_runs(short_sample):
    namespace: dict = {}
    exec(compile(_python_block("### Python"), "README.md", "exec"), namespace)
    assert tuple(namespace["h"].shape) == (8, 256)


def test_methods_example_runs(short_sample):
    namespace: dict = {}
    exec(compile(_python_block("## Methods", "docs/methods.md"), "docs/methods.md", "exec"), namespace)
    assert namespace["model"].optimizer.iterations.numpy() > 0


def test_loading_the_export_runs(tmp_path):
    export_dir = export_encoder(build_encoder("small_cnn", (28, 28, 1), 0.25), tmp_path / "export", (28, 28, 1))
    code = _python_block("## Using the export in another app", "docs/export.md")
    code = code.replace("runs/simclr/export", str(export_dir))
    namespace: dict = {}
    exec(compile(code, "docs/export.md", "exec"), namespace)
    assert namespace["h"].shape == (4, 64)
    np.testing.assert_allclose(namespace["h"], namespace["h_again"], rtol=1e-6)


def test_the_backbone_factory_example_is_a_factory_the_encoder_takes(monkeypatch):
    module = types.ModuleType("docs_backbones")
    exec(
        compile(_python_block("### Backbones by name or by hand", "docs/methods.md"), "docs/methods.md", "exec"),
        vars(module),
    )
    monkeypatch.setitem(sys.modules, module.__name__, module)
    encoder = build_encoder("docs_backbones:build", (32, 32, 3))
    assert encoder.name == "my_backbone" and encoder.output_shape == (None, 64)


def test_the_encoder_docs_name_every_keras_application_by_its_family():
    documented = set(re.findall(r"`(\w+)`", PAGES["docs/methods.md"].split("### Backbones by name or by hand")[1]))
    assert set(APPLICATIONS) <= documented


def test_the_readme_stays_an_entry_page():
    """Detail goes to docs/, which the README links to."""
    assert len(README.splitlines()) <= 200


def test_the_method_tables_have_a_row_for_every_method():
    """The tables are prose (papers, what each method learns from); the registry says which
    rows they need. Elsewhere the pages point to `METHODS` instead of listing methods."""
    for method in METHODS:
        assert f"`--method={method}`" in README, method
        assert f"| `{method}` | `{METHODS[method].__name__}` |" in PAGES["docs/methods.md"], method


@pytest.mark.parametrize("heading", ["## Fine-tuning the export", "### Through TFSMLayer"])
def test_fine_tuning_the_export_runs(heading, tmp_path):
    """On a tiny encoder and random digits; tests/e2e/test_fine_tune_export.py runs it for
    real, in a process without this package."""
    export_dir = export_encoder(build_encoder("small_cnn", (28, 28, 1), 0.25), tmp_path / "export", (28, 28, 1))
    rng = np.random.default_rng(0)
    namespace = {
        "x_train": rng.integers(0, 256, (64, 28, 28, 1), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 64),
        "x_test": rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 16),
        "export_dir": str(export_dir),
    }
    code = _python_block(heading, "docs/export.md").replace('"runs/simclr/export"', "export_dir")
    exec(compile(code, "docs/export.md", "exec"), namespace)
    assert 0 <= namespace["accuracy"] <= 1


# The (page, heading) of every Python block the tests above run.
TESTED_BLOCKS = (
    ("README.md", "### Python"),
    ("docs/methods.md", "## Methods"),
    ("docs/export.md", "## Using the export in another app"),
    ("docs/methods.md", "### Backbones by name or by hand"),
    ("docs/export.md", "## Fine-tuning the export"),
    ("docs/export.md", "### Through TFSMLayer"),
)


def test_every_python_block_is_run_by_a_test():
    """A Python block added to the README or a docs page needs a test above that runs it."""
    every_block = {
        (page, block) for page, text in PAGES.items() for block in re.findall(r"```python\n(.*?)```", text, re.S)
    }
    assert every_block == {(page, _python_block(heading, page)) for page, heading in TESTED_BLOCKS}


# absl's own flags, which every command takes.
ABSL_FLAGS = {"flagfile", "helpfull", "helpshort"}


def test_cli_reference_is_the_one_the_code_declares():
    """docs/cli.md is made from the flag declarations; after changing one, run
    `python -m experiments.cli_reference`."""
    assert cli_reference.DOC.read_text() == cli_reference.render()


def _commands(entry_point: str, text: str) -> str:
    """The arguments of every line that runs `python -m experiments.ENTRY_POINT`, in a
    shell block or inline, with shell continuation lines joined."""
    one_line = text.replace("\\\n", " ")
    return " ".join(re.findall(rf"python -m experiments\.{entry_point}\b([^\n]*)", one_line))


def _flags_used(entry_point: str, text: str) -> set[str]:
    """The flags of `_commands`; a flag given as a value (quality's --override=--epochs=1)
    is another command's."""
    return set(re.findall(r"(?<!=)--([a-z_0-9]+)", _commands(entry_point, text)))


def test_the_overrides_in_the_quality_commands_are_pretrain_flags():
    declared = set(cli_reference.entry_point_flags("pretrain"))
    commands = " ".join(_commands("quality", text) for text in PAGES.values())
    overridden = set(re.findall(r"--override=--([a-z_0-9]+)", commands))
    assert overridden and not overridden - declared, sorted(overridden - declared)


def test_every_flag_in_the_commands_exists():
    for entry_point in cli_reference.ENTRY_POINTS:
        declared = set(cli_reference.entry_point_flags(entry_point)) | ABSL_FLAGS
        used_anywhere = set()
        for page, text in PAGES.items():
            used = _flags_used(entry_point, text)
            unknown = used - declared
            assert not unknown, f"{page}: python -m experiments.{entry_point} has no flag {sorted(unknown)}"
            used_anywhere |= used
        assert used_anywhere, f"no page shows python -m experiments.{entry_point} with a flag"
