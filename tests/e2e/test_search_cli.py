"""`python -m experiments.search` as a process: it writes the neighbours figure and exits 0,
and a query file that is not there is one `error:` line and exit 2."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from contrastive_tf.encoders import build_encoder
from contrastive_tf.export import export_encoder
from contrastive_tf.search import INDEX_FILE, NEIGHBOURS_FIGURE


def _search(*flags):
    command = [sys.executable, "-m", "experiments.search", *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_search_writes_the_neighbours_figure_and_a_missing_query_is_exit_2(tmp_path):
    export = export_encoder(build_encoder("small_cnn", (28, 28, 1), 0.25), tmp_path / "export", (28, 28, 1))
    images = np.random.default_rng(0).integers(0, 256, (5, 40, 40, 3), np.uint8)  # resized to 28 x 28 gray
    for number, image in enumerate(images):
        (tmp_path / "images" / f"class{number % 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / f"class{number % 2}" / f"{number}.png").write_bytes(tf.io.encode_png(image).numpy())
    query = tmp_path / "images" / "class0" / "0.png"
    common = [f"--encoder_path={export}", f"--index={tmp_path / 'images'}", f"--output_dir={tmp_path / 'out'}"]

    found = _search(*common, f"--query={query}", f"--query={tmp_path / 'images' / 'class1' / '1.png'}", "--k=3")
    assert found.returncode == 0, found.stderr[-3000:]
    assert (tmp_path / "out" / NEIGHBOURS_FIGURE).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / INDEX_FILE).exists()
    lines = found.stdout.splitlines()
    assert lines[:2] == [f"{query}:", "  1.000  class0/0.png"]  # an indexed query finds itself first
    assert lines[-1].startswith("searched 5 images of ")

    missing = _search(*common, f"--query={tmp_path / 'no_such.png'}")
    assert missing.returncode == 2, missing.stderr[-3000:]
    assert missing.stderr.strip().splitlines()[-1] == f"error: image file {tmp_path / 'no_such.png'} does not exist"
