"""`python -m experiments.quality --configs=FILE` makes a recipe file's rows: pretraining as
`experiments.pretrain --flagfile=FILE` would, then the linear probe, kNN and fine-tuning
beside the random-weights and from-scratch baselines, written to results.json."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT


def _quality(*flags):
    command = [sys.executable, "-m", "experiments.quality", *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_recipe_files_rows_beside_their_baselines(mnist_subset, tmp_path):
    recipe = tmp_path / "tiny_mnist.flags"
    recipe.write_text(
        f"# A tiny recipe for this test.\n--dataset={mnist_subset}\n--epochs=4\n--batch_size=200\n--width=0.5\n"
    )
    output_dir = tmp_path / "quality"
    flags = [f"--configs={recipe}", "--label_fractions=0.1", f"--output_dir={output_dir}"]
    flags += ["--finetune_epochs=1", "--finetune_learning_rate=0.003"]
    # The overrides come after the file, as on experiments.pretrain's command line.
    flags += ["--override=--epochs=1", "--override=--width=0.25"]
    done = _quality(*flags)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((output_dir / "results.json").read_text())
    rows = {(row["evaluation"], row["labels"]): row for row in results["rows"]}
    assert {row["dataset"] for row in results["rows"]} == {"tiny_mnist"}
    assert set(results["pretraining_minutes"]) == {"tiny_mnist/simclr"}
    assert results["fine_tuning"] == {"epochs": 1, "learning_rate": 0.003, "crop_scale_min": 0.08}
    linear = rows[("linear probe (standardised)", "100%")]
    assert 0 < linear["learned"] <= 1 and 0 < linear["random_weights"] <= 1
    assert 0 < rows[("fine-tune", "10%")]["from_scratch"] <= 1
    assert ("kNN (k=200)", "100%") in rows
    assert "| tiny_mnist | simclr (" in done.stdout
    run = output_dir / "tiny_mnist" / "simclr"
    assert (run / "export" / "saved_model.pb").exists()
    assert len((run / "history.csv").read_text().strip().splitlines()) == 2  # a header and one epoch
    assert json.loads((run / "export" / "model_card.json").read_text())["encoder"] == "small_cnn_w0.25"


@pytest.mark.slow
def test_a_missing_recipe_file_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "nowhere.flags"
    done = _quality(f"--configs={missing}", f"--output_dir={tmp_path}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: recipe file {missing} does not exist; pass a flagfile such as configs/cpu_mnist.flags"
    )


@pytest.mark.slow
def test_overrides_without_recipe_files_are_one_line_and_exit_2(tmp_path):
    done = _quality("--override=--epochs=1", f"--output_dir={tmp_path}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: --override applies to recipe files; pass them with --configs"
