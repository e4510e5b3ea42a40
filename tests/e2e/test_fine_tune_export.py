"""An app without this package fine-tunes the export of a real pretraining run, as
docs/export.md shows (issue 27: "An export to fine-tune")."""

import json
import re

import numpy as np
import pytest

from builders import run_without_the_package
from conftest import ROOT

LABELLED = 2000


def _docs_block(heading: str) -> str:
    page = (ROOT / "docs" / "export.md").read_text()
    block = re.search(rf"{re.escape(heading)}.*?```python\n(.*?)```", page, re.S).group(1)
    return block.replace('"runs/simclr/export"', "export_dir")  # the app's


# Runs the docs' two examples and, for scale, a linear head on the frozen export; says what
# each left of the encoder, and how the export embeds 40 px digits.
APP = """
import json, sys
import keras
import numpy as np
import tensorflow as tf

export_dir, data_path, out_path, keras_example, tfsm_example = sys.argv[1:]
with np.load(data_path) as data:
    x_train, y_train, x_test, y_test = (data[name] for name in ("x_train", "y_train", "x_test", "y_test"))
keras.utils.set_random_seed(0)
report = {}

# The frozen export: h of every image once, then a linear head on standardised h, 100 epochs.
frozen = keras.layers.TFSMLayer(export_dir, call_endpoint="serving_default", trainable=False)
h_train, h_test = (frozen(x)["representation"] for x in (x_train, x_test))
standardize = keras.layers.Normalization()
standardize.adapt(h_train)
features = keras.Input(h_train.shape[1:])
head = keras.Model(features, keras.layers.Dense(10)(standardize(features)))
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
head.compile(keras.optimizers.Adam(1e-2), loss, metrics=["accuracy"])
head.fit(h_train, y_train, epochs=100, batch_size=100, verbose=0)
report["frozen"] = {"accuracy": head.evaluate(h_test, y_test, verbose=0)[1]}


def changes(weights, before, name):
    moved = {name(w): float(np.abs(w.numpy() - before[name(w)]).max()) for w in weights}
    statistics = [change for key, change in moved.items() if "moving_" in key]
    others = [change for key, change in moved.items() if "moving_" not in key]
    return {"weights": len(others), "unchanged_weights": others.count(0.0), "statistics": len(statistics),
            "unmoved_statistics": statistics.count(0.0), "smallest_weight_change": min(others)}


def run(example):
    namespace = {"export_dir": export_dir, "x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    exec(example, namespace)
    return namespace


before = {w.path: w.numpy() for w in keras.saving.load_model(f"{export_dir}/encoder.keras").weights}
done = run(keras_example)
report["keras_file"] = {"accuracy": done["accuracy"], **changes(done["encoder"].weights, before, lambda w: w.path)}

# TFSMLayer names a weight by its TensorFlow variable's name, "/" made "_".
before = {v.name.replace("/", "_"): v.numpy() for v in tf.saved_model.load(export_dir).variables}
done = run(tfsm_example)
report["tfsm_layer"] = {"accuracy": done["accuracy"], **changes(done["encoder"].weights, before, lambda w: w.name)}

padded = np.pad(x_test[:100], ((0, 0), (6, 6), (6, 6), (0, 0)))  # 40 px digits
large = tf.saved_model.load(export_dir).signatures["serving_default"](images=tf.constant(padded))["representation"]
report["large"] = {"shape": list(large.shape), "finite": bool(np.isfinite(large).all()),
                   "distinct": len(np.unique(np.round(large.numpy(), 4), axis=0))}
with open(out_path, "w") as file:
    json.dump(report, file)
"""


@pytest.fixture(scope="module")
def fine_tuned(pretrained_run, mnist_subset, tmp_path_factory) -> dict:
    """What the app reports, fine-tuning on the first 2,000 training digits and testing on
    the 1,000 test digits of the subset."""
    model_dir, _ = pretrained_run
    folder = tmp_path_factory.mktemp("fine_tune")
    with np.load(mnist_subset) as mnist:
        np.savez(
            folder / "digits.npz",
            x_train=mnist["x_train"][:LABELLED, ..., None],
            y_train=mnist["y_train"][:LABELLED],
            x_test=mnist["x_test"][..., None],
            y_test=mnist["y_test"],
        )
    examples = [_docs_block("## Fine-tuning the export"), _docs_block("### Through TFSMLayer")]
    export_dir = model_dir / "export"
    run_without_the_package(APP, export_dir, folder / "digits.npz", folder / "report.json", *examples, timeout=1200)
    report = json.loads((folder / "report.json").read_text())
    print(json.dumps(report, indent=1))  # the figures docs/export.md quotes
    return report


@pytest.mark.slow
@pytest.mark.parametrize("route", ["keras_file", "tfsm_layer"])
def test_fine_tuning_changes_every_weight_and_moves_every_batch_norm_statistic(fine_tuned, route):
    trained = fine_tuned[route]
    assert trained["weights"] == 12 and trained["statistics"] == 8  # small_cnn: 4 conv-BN layers
    assert trained["unchanged_weights"] == trained["unmoved_statistics"] == 0, trained


@pytest.mark.slow
@pytest.mark.parametrize("route", ["keras_file", "tfsm_layer"])
def test_fine_tuning_beats_a_linear_head_on_the_frozen_export(fine_tuned, route):
    assert fine_tuned[route]["accuracy"] > fine_tuned["frozen"]["accuracy"], fine_tuned


@pytest.mark.slow
def test_the_same_export_embeds_40_px_digits(fine_tuned):
    large = fine_tuned["large"]
    assert large["shape"] == [100, 256] and large["finite"] and large["distinct"] == 100
