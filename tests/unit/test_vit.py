"""Vision Transformers as MoCo v3 builds them (facebookresearch/moco-v3 vits.py)."""

import keras
import numpy as np
import pytest

from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.vit import VITS, sincos_positions, vision_transformer
from references import numpy_mocov3_positions


def test_positions_are_moco_v3s_fixed_sine_cosine_embedding():
    np.testing.assert_allclose(sincos_positions(8, 192), numpy_mocov3_positions(8, 192), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_vit_maps_unit_range_images_to_h_of_its_width(pooling):
    encoder = vision_transformer("vit_tiny", (32, 32, 3), pooling=pooling)
    assert encoder.output_shape == (None, VITS["vit_tiny"][0])
    assert encoder.get_layer("patch_projection").kernel.shape == (4, 4, 3, 192)  # 4 px patches at 32 px
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    assert np.all(np.isfinite(encoder(images)))


def test_the_patch_projection_is_frozen_as_moco_v3s_stop_grad_conv1_unless_asked():
    frozen = vision_transformer("vit_tiny", (32, 32, 3))
    trainable = vision_transformer("vit_tiny", (32, 32, 3), frozen_patch_projection=False)
    assert "patch_projection" not in {w.path.split("/")[0] for w in frozen.trainable_weights}
    assert len(trainable.trainable_weights) == len(frozen.trainable_weights) + 2
    # The positions are fixed: the [CLS] token is the only weight of the token layer.
    assert [w.name for w in frozen.get_layer("tokens").weights] == ["class_token"]


def test_attention_is_initialised_as_xavier_on_each_d_by_d_projection():
    encoder = vision_transformer("vit_small", (32, 32, 3), patch_size=8)
    kernel = encoder.get_layer("block_0_attention")._query_dense.kernel.numpy()
    bound = np.sqrt(6.0 / (384 + 384))
    assert kernel.shape == (384, 12, 32) and np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound


def test_a_vit_round_trips_through_a_keras_file(tmp_path):
    encoder = vision_transformer("vit_tiny", (16, 16, 1), patch_size=4, pooling="mean")
    encoder.save(tmp_path / "vit.keras")
    images = np.random.default_rng(1).uniform(size=(2, 16, 16, 1)).astype(np.float32)
    restored = keras.saving.load_model(tmp_path / "vit.keras")
    np.testing.assert_allclose(restored(images), encoder(images), rtol=1e-6, atol=1e-6)


def test_a_patch_size_that_does_not_divide_the_image_is_refused_in_one_line():
    with pytest.raises(UsageError, match="patch_size 5: choose a patch_size that divides 32"):
        vision_transformer("vit_tiny", (32, 32, 3), patch_size=5)
    with pytest.raises(UsageError, match="unknown vision transformer 'vit_huge'"):
        vision_transformer("vit_huge", (32, 32, 3))


def test_build_encoder_builds_a_vit_by_name_with_its_settings():
    encoder = build_encoder("vit_tiny", (32, 32, 3), patch_size=8, vit_pooling="mean", input_normalization="cifar10")
    assert encoder.get_layer("patch_projection").kernel.shape == (8, 8, 3, 192)
    assert encoder.get_layer("input_normalization") is not None and encoder.output_shape == (None, 192)
    with pytest.raises(UsageError, match="width"):
        build_encoder("vit_tiny", (32, 32, 3), width=0.5)
