"""The SavedModel export: loadable without this package, atomic, never overwritten silently."""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.data import to_unit_range
from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.export import export_encoder
from contrastive_tf.precision import global_precision

# Runs in a fresh interpreter that never imports contrastive_tf.
LOADER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    import tensorflow as tf

    export_dir, images_path, out_path = sys.argv[1:]
    images = np.load(images_path)
    loaded = tf.saved_model.load(export_dir)
    from_saved_model = loaded.signatures["serving_default"](images=tf.constant(images))["representation"]
    from_float = loaded.signatures["serve_float"](images=tf.constant(images, tf.float32) / 255.0)["representation"]
    layer = keras.layers.TFSMLayer(export_dir, call_endpoint="serving_default")
    from_layer = layer(tf.constant(images))["representation"]
    assert "contrastive_tf" not in sys.modules
    np.savez(out_path, saved_model=from_saved_model.numpy(), float=from_float.numpy(), layer=from_layer.numpy())
    """
)


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("small_cnn", (28, 28, 1), width=0.25)


def test_export_loads_without_the_package_and_gives_the_same_embeddings(encoder, tmp_path):
    export_dir = export_encoder(encoder, tmp_path / "export", (28, 28, 1), metadata={"dataset": "test"})
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    subprocess.run(
        [sys.executable, "-c", LOADER, str(export_dir), str(tmp_path / "images.npy"), str(tmp_path / "out.npz")],
        check=True,
        timeout=300,
    )
    expected = encoder(to_unit_range(images), training=False).numpy()
    with np.load(tmp_path / "out.npz") as out:
        for name in ("saved_model", "float", "layer"):
            np.testing.assert_allclose(out[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)
    assert json.loads((export_dir / "model_card.json").read_text()) == {"dataset": "test"}


def test_existing_export_is_refused_without_overwrite(encoder, tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(UsageError, match="already exists; set overwrite"):
        export_encoder(encoder, target, (28, 28, 1))
    assert (target / "keep.txt").read_text() == "precious"


def test_overwrite_replaces_the_export_and_leaves_no_temporary_folders(encoder, tmp_path):
    target = tmp_path / "export"
    export_encoder(encoder, target, (28, 28, 1))
    (target / "stale.txt").write_text("old")
    export_encoder(encoder, target, (28, 28, 1), overwrite=True)
    assert (target / "saved_model.pb").exists() and not (target / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_failed_export_leaves_nothing_behind(encoder, tmp_path, monkeypatch):
    def disk_full(obj, export_dir, *args, **kwargs):
        (pathlib.Path(export_dir) / "saved_model.pb").write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tensorflow.saved_model.save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_encoder(encoder, tmp_path / "export", (28, 28, 1))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, shape, pooling_grid",
    [("small_cnn", (28, 28, 1), 1), ("small_cnn", (28, 28, 1), 2), ("resnet18", (32, 32, 3), 1)],
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
