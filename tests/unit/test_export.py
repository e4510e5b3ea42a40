"""The export: loadable without this package, at any image size where the encoder pools
globally, trainable through TFSMLayer and through encoder.keras, convertible to TFLite,
atomic, never overwritten silently."""

import json
import pathlib
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from builders import run_without_the_package
from contrastive_tf.data import to_unit_range
from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.export import TRAIN_ENDPOINT, export_encoder, non_keras_operations
from contrastive_tf.precision import global_precision
from contrastive_tf.run_folder import ENCODER_FILE, METADATA_FILE, TFLITE_FILE

SHAPE = (28, 28, 1)
LARGE = (40, 40, 1)

# An app on a machine without this package: it embeds the test's images every way the
# export offers, then trains a classifier on the encoder for one step through TFSMLayer
# (plain SGD: see docs/export.md) and through encoder.keras (Adam), and says what changed.
APP = """
import json, sys
import keras
import numpy as np
import tensorflow as tf

export_dir, arrays_path, out_dir = sys.argv[1:]
with np.load(arrays_path) as arrays:
    small, large, labels = arrays["small"], arrays["large"], arrays["labels"]
saved = tf.saved_model.load(export_dir)
encoder = keras.saving.load_model(f"{export_dir}/encoder.keras")
outputs = {
    "saved_model": saved.signatures["serving_default"](images=tf.constant(small))["representation"],
    "float": saved.signatures["serve_float"](images=tf.constant(small / 255, tf.float32))["representation"],
    "layer": keras.layers.TFSMLayer(export_dir, call_endpoint="serving_default")(small)["representation"],
    "keras_file": encoder(small / 255, training=False),
    "saved_model_large": saved.signatures["serving_default"](images=tf.constant(large))["representation"],
    "keras_file_large": encoder(large / 255, training=False),
}
np.savez(f"{out_dir}/outputs.npz", **{name: np.asarray(value) for name, value in outputs.items()})


def train_once(h, weights, optimizer):
    inputs = keras.Input(small.shape[1:])
    classifier = keras.Model(inputs, keras.layers.Dense(10)(h(inputs)))
    classifier.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [[w.numpy().copy() for w in group] for group in weights]
    classifier.fit(small / 255, labels, batch_size=len(labels), epochs=1, verbose=0)
    changes = [[float(np.abs(w.numpy() - b).max()) for w, b in zip(group, old)] for group, old in zip(weights, before)]
    return {"trainable": len(weights[0]), "non_trainable": len(weights[1]), "changes": changes}


layer = keras.layers.TFSMLayer(
    export_dir, call_endpoint="serve_float", call_training_endpoint="train_float", trainable=True
)
report = {
    "tfsm_layer": train_once(
        lambda x: layer(x)["representation"], [layer.trainable_weights, layer.non_trainable_weights], "sgd"
    ),
    "keras_file": train_once(encoder, [encoder.trainable_weights, encoder.non_trainable_weights], "adam"),
}
with open(f"{out_dir}/report.json", "w") as file:
    json.dump(report, file)
"""


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("small_cnn", SHAPE, width=0.25)


@pytest.fixture(scope="module")
def app(encoder, tmp_path_factory):
    """What the app saw of the encoder's export: (outputs, report, images)."""
    folder = tmp_path_factory.mktemp("app")
    export_dir = export_encoder(encoder, folder / "export", SHAPE, metadata={"dataset": "test"})
    rng = np.random.default_rng(0)
    arrays = {
        "small": rng.integers(0, 256, (8, *SHAPE), dtype=np.uint8),
        "large": rng.integers(0, 256, (3, *LARGE), dtype=np.uint8),
        "labels": rng.integers(0, 10, 8),
    }
    np.savez(folder / "arrays.npz", **arrays)
    run_without_the_package(APP, export_dir, folder / "arrays.npz", folder)
    report = json.loads((folder / "report.json").read_text())
    with np.load(folder / "outputs.npz") as outputs:
        return dict(outputs), report, arrays


def test_an_app_without_the_package_embeds_as_the_encoder_does(encoder, app):
    outputs, _, arrays = app
    expected = encoder(to_unit_range(arrays["small"]), training=False).numpy()
    for name in ("saved_model", "float", "layer", "keras_file"):
        np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_an_encoder_that_pools_globally_embeds_images_of_another_size(encoder, app):
    outputs, _, arrays = app
    larger = build_encoder("small_cnn", LARGE, width=0.25)  # the same layers, built for 40 px
    larger.set_weights(encoder.get_weights())
    expected = larger(to_unit_range(arrays["large"]), training=False).numpy()
    for name in ("saved_model_large", "keras_file_large"):
        np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("route", ["tfsm_layer", "keras_file"])
def test_an_app_without_the_package_trains_every_weight_and_moves_batch_norm_statistics(encoder, app, route):
    trained = app[1][route]
    assert (trained["trainable"], trained["non_trainable"]) == (
        len(encoder.trainable_weights),
        len(encoder.non_trainable_weights),
    )
    weights, statistics = trained["changes"]
    assert min(weights) > 0 and min(statistics) > 0


def test_the_card_says_what_the_export_takes_and_holds(encoder, tmp_path):
    card = json.loads(
        (export_encoder(encoder, tmp_path / "export", SHAPE, metadata={"dataset": "test"}) / METADATA_FILE).read_text()
    )
    assert card["dataset"] == "test" and card["image_shape"] == list(SHAPE)
    assert card["image_size"] == "any height and width (trained at 28x28)"
    assert set(card["signatures"]) == {"serving_default", "serve_float", TRAIN_ENDPOINT}
    assert card["keras_file"] == ENCODER_FILE and "tflite" not in card


@pytest.mark.parametrize(
    "name, width",
    [("small_cnn", 0.25), ("tests.tiny_backbones:blocks", 1.0)],  # batch norm in a nested layer, not a model
)
def test_the_train_endpoint_computes_and_learns_as_the_encoder_in_training_mode(name, width, tmp_path, caplog):
    """The same batch statistics, the same gradients (to float32 rounding: the graphs
    differ), the same moving averages after a step; traced without the replicas'
    all-reduce, whose custom gradient would make every load warn."""
    encoder = build_encoder(name, SHAPE, width=width)
    layer = keras.layers.TFSMLayer(
        str(export_encoder(encoder, tmp_path / "export", SHAPE)),
        call_endpoint="serve_float",
        call_training_endpoint=TRAIN_ENDPOINT,
        trainable=True,
    )
    images = np.random.default_rng(2).random((8, *SHAPE), dtype=np.float32)
    with tf.GradientTape(persistent=True) as tape:
        exported = layer(images, training=True)["representation"]
        expected = encoder(images, training=True)
        losses = tf.reduce_sum(exported**2), tf.reduce_sum(expected**2)
    np.testing.assert_allclose(exported, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(exported, layer(images)["representation"], atol=1e-3)  # inference mode differs
    # TFSMLayer names each variable by its TensorFlow name, "/" made "_".
    names = [weight.value.name.replace("/", "_") for weight in encoder.trainable_weights]
    expected_gradients = dict(zip(names, tape.gradient(losses[1], encoder.trainable_weights)))
    for weight, gradient in zip(layer.trainable_weights, tape.gradient(losses[0], layer.trainable_weights)):
        np.testing.assert_allclose(gradient, expected_gradients[weight.name], rtol=1e-3, atol=1e-4, err_msg=weight.name)
    statistics = {weight.value.name.replace("/", "_"): weight for weight in encoder.non_trainable_weights}
    for weight in layer.non_trainable_weights:
        np.testing.assert_allclose(
            weight.numpy(), statistics[weight.name].numpy(), rtol=1e-5, atol=1e-6, err_msg=weight.name
        )
    assert "custom gradients" not in caplog.text


def test_an_encoder_pooled_over_a_fixed_grid_takes_its_own_size_only_and_says_so(tmp_path):
    encoder = build_encoder("small_cnn", SHAPE, width=0.25, pooling_grid=2)
    export_dir = export_encoder(encoder, tmp_path / "export", SHAPE)
    card = json.loads((export_dir / METADATA_FILE).read_text())
    assert card["image_size"] == "28x28 only: small_cnn_w0.25_grid2 does not run on images of unknown size"
    serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].shape.as_list() == [None, *SHAPE]
    assert keras.saving.load_model(export_dir / ENCODER_FILE).input_shape == (None, *SHAPE)


def test_an_encoder_with_a_lambda_exports_without_a_keras_file_and_says_why(tmp_path):
    images = keras.Input(SHAPE)
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(images))
    encoder = keras.Model(images, keras.layers.Lambda(lambda h: 2 * h)(pooled))
    assert non_keras_operations(encoder) == ["Lambda"]
    assert non_keras_operations(build_encoder("resnet50", (32, 32, 3), width=0.125, sk_ratio=0.0625)) == []
    export_dir = export_encoder(encoder, tmp_path / "export", SHAPE)
    card = json.loads((export_dir / METADATA_FILE).read_text())
    assert card["keras_file"] is None and card["keras_file_missing"].startswith("Lambda: not Keras' own")
    assert not (export_dir / ENCODER_FILE).exists() and (export_dir / "saved_model.pb").exists()


@pytest.mark.parametrize("precision, tolerance", [("float32", 1e-5), ("mixed_bfloat16", 0.05)])
def test_the_tflite_encoder_computes_what_the_saved_model_does(precision, tolerance, tmp_path, caplog):
    """Within float32 rounding; a mixed-precision encoder converts as float32, so within
    bfloat16's (relative to the largest |h|)."""
    with global_precision(precision):
        encoder = build_encoder("small_cnn", SHAPE, width=0.25)
    images = np.random.default_rng(3).integers(0, 256, (6, *SHAPE), dtype=np.uint8)
    with caplog.at_level("INFO", logger="contrastive_tf.export"):
        export_dir = export_encoder(encoder, tmp_path / "export", SHAPE, tflite=True, sample_images=images)
    report = json.loads((export_dir / METADATA_FILE).read_text())["tflite"]
    assert report["bytes"] == (export_dir / TFLITE_FILE).stat().st_size
    assert report["compared_on"] == "6 images given to the export"
    assert f"{TFLITE_FILE}: " in caplog.text and "differ from the SavedModel's by at most" in caplog.text
    interpreter = tf.lite.Interpreter(model_path=str(export_dir / TFLITE_FILE))
    lite = interpreter.get_signature_runner("serve_float")(images=images.astype(np.float32) / 255)["representation"]
    saved = tf.saved_model.load(str(export_dir)).signatures["serving_default"](images=tf.constant(images))
    scale = np.abs(saved["representation"].numpy()).max()
    difference = np.abs(lite - saved["representation"].numpy()).max()
    assert difference == pytest.approx(report["max_abs_difference"], rel=0.05, abs=1e-6)
    assert difference <= tolerance * max(scale, 1.0)


def test_existing_export_is_refused_without_overwrite(encoder, tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(UsageError, match="already exists; set overwrite"):
        export_encoder(encoder, target, SHAPE)
    assert (target / "keep.txt").read_text() == "precious"


def test_overwrite_replaces_the_export_and_leaves_no_temporary_folders(encoder, tmp_path):
    target = tmp_path / "export"
    export_encoder(encoder, target, SHAPE, tflite=True)
    (target / "stale.txt").write_text("old")
    export_encoder(encoder, target, SHAPE, overwrite=True)
    assert (target / "saved_model.pb").exists() and not (target / "stale.txt").exists()
    assert not (target / TFLITE_FILE).exists()  # nothing of the old export stays
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_failed_export_leaves_nothing_behind(encoder, tmp_path, monkeypatch):
    def disk_full(obj, export_dir, *args, **kwargs):
        (pathlib.Path(export_dir) / "saved_model.pb").write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tensorflow.saved_model.save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_encoder(encoder, tmp_path / "export", SHAPE)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_tflite_conversion_leaves_nothing_behind(encoder, tmp_path, monkeypatch):
    def unsupported():
        raise RuntimeError("op not supported")

    monkeypatch.setattr(
        tf.lite.TFLiteConverter, "from_saved_model", lambda *args, **kwargs: SimpleNamespace(convert=unsupported)
    )
    with pytest.raises(RuntimeError, match="op not supported"):
        export_encoder(encoder, tmp_path / "export", SHAPE, tflite=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, shape, pooling_grid",
    [("small_cnn", SHAPE, 1), ("small_cnn", SHAPE, 2), ("resnet18", (32, 32, 3), 1)],
)
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_every_configuration_exports_what_the_model_computes(name, shape, pooling_grid, precision, tmp_path):
    """The export computes in the precision the encoder was trained in, and returns float32.
    A mixed-precision export matches its Keras model to rounding; against a float32 copy of
    the same weights it differs by bfloat16's ~3 significant digits."""
    with global_precision(precision):
        encoder = build_encoder(name, shape, width=0.25, pooling_grid=pooling_grid)
    images = np.random.default_rng(1).integers(0, 256, (4, *shape), dtype=np.uint8)
    serve = tf.saved_model.load(str(export_encoder(encoder, tmp_path / "export", shape))).signatures["serving_default"]
    exported = serve(images=tf.constant(images))["representation"].numpy()
    expected = tf.cast(encoder(to_unit_range(images), training=False), tf.float32).numpy()
    assert exported.dtype == np.float32
    np.testing.assert_allclose(exported, expected, rtol=1e-5, atol=1e-6)
    if precision != "float32":
        full = build_encoder(name, shape, width=0.25, pooling_grid=pooling_grid)
        full.set_weights(encoder.get_weights())
        reference = full(to_unit_range(images), training=False).numpy()
        np.testing.assert_allclose(exported, reference, rtol=0.1, atol=0.05 * np.abs(reference).max())
