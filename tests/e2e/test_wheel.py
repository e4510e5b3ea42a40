"""The wheel, installed outside the repository: what it holds and its command."""

import os
import re
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the wheel, the folder it is installed in) with this interpreter's dependencies."""
    folder = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(folder / "dist"), "-q"]
    subprocess.run(build, check=True, cwd=folder)
    (wheel,) = (folder / "dist").glob("contrastive_tf-*.whl")
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(folder / "site"), str(wheel), "-q"]
    subprocess.run(install, check=True, cwd=folder)
    return wheel, folder / "site"


def _run(site, *command):
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(command, cwd=site.parent, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_wheel_holds_the_library_its_sample_and_the_commands_under_names_of_their_own(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"contrastive_tf", "contrastive_tf_experiments"}
    assert "contrastive_tf/sample/mnist_sample.npz" in names
    assert "contrastive_tf_experiments/pretrain.py" in names


@pytest.mark.slow
def test_the_installed_command_starts_quietly_with_its_own_help(installed):
    _, site = installed
    result = _run(site, str(site / "bin" / "contrastive-tf"), "pretrain", "--helpfull")
    assert result.stderr == "" and result.stdout.startswith("Pretrain an encoder"), result.stderr[-3000:]


@pytest.mark.slow
def test_the_installed_library_reads_its_embedded_sample(installed):
    _, site = installed
    code = "import contrastive_tf as c; print(c.__file__); print(c.load_data('sample').num_classes)"
    result = _run(site, sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [str(site / "contrastive_tf" / "__init__.py"), "10"]


def test_the_commands_import_each_other_relatively_as_the_wheel_renames_their_package():
    absolute = [
        f"{path.name}:{number}"
        for path in sorted((ROOT / "experiments").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*(from|import) experiments\b", line) or '"experiments.' in line
    ]
    assert not absolute, absolute
