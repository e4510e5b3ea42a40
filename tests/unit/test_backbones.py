"""Backbones by name or by hand: keras.applications models and a user's factory as encoders,
their [0, 1] input contract, weights files, synchronised batch norm, bad names in one
line, and a pretraining run whose export loads."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf import run_folder
from contrastive_tf.backbones import APPLICATIONS, application, batch_norm_layers
from contrastive_tf.config import PretrainConfig
from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.methods.momentum import MomentumNetwork
from contrastive_tf.pretraining import build_model, prepare, pretrain
from contrastive_tf.run_folder import load_pretrained

SHAPE = (32, 32, 3)
FACTORY = "tests.tiny_backbones:build"

# What each family expects of [0, 255] pixels, as Keras documents it for its applications:
# caffe (ResNet, VGG): RGB to BGR, minus the ImageNet means; tf: [-1, 1]; torch (DenseNet):
# ImageNet standardisation of [0, 1]; none: the network rescales [0, 255] itself.
PREPROCESSING = {
    "caffe": lambda pixels: pixels[..., ::-1] - np.array([103.939, 116.779, 123.68]),
    "tf": lambda pixels: pixels / 127.5 - 1,
    "torch": lambda pixels: (pixels / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
    "none": lambda pixels: pixels,
}


def _images(count=2, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(size=(count, *shape)).astype(np.float32)


def _bare(name, shape=SHAPE, **options):
    """The application as Keras builds it, without this library's wrapping."""
    return getattr(keras.applications, name)(
        include_top=False, weights=None, input_shape=shape, pooling="avg", **options
    )


def test_every_image_model_of_keras_applications_is_an_encoder_name():
    assert {"MobileNetV3Small", "EfficientNetV2B0", "ResNet50V2", "ConvNeXtTiny", "VGG16"} <= set(APPLICATIONS)
    for name in (*APPLICATIONS, FACTORY, "resnet50", "auto"):
        PretrainConfig(encoder=name).validate()


@pytest.mark.parametrize(
    "name, family",
    [
        ("ResNet50", "caffe"),
        ("ResNet50V2", "tf"),
        ("DenseNet121", "torch"),
        ("EfficientNetV2B0", "none"),
        ("MobileNetV3Small", "none"),
    ],
)
def test_an_application_takes_unit_images_and_applies_its_own_preprocessing_inside(name, family):
    encoder = build_encoder(name, SHAPE)
    bare = _bare(name)
    bare.set_weights(encoder.get_weights())
    images = _images()
    expected = bare(PREPROCESSING[family](images * 255.0).astype(np.float32), training=False)
    h = encoder(images, training=False)
    assert h.shape == (2, bare.output_shape[-1])
    np.testing.assert_allclose(h, expected, rtol=1e-4, atol=1e-4)


def test_grey_images_enter_an_application_in_all_three_channels():
    encoder = build_encoder("MobileNetV3Small", (32, 32, 1), width=0.25)
    bare = _bare("MobileNetV3Small", alpha=0.25)
    bare.set_weights(encoder.get_weights())
    grey = _images(shape=(32, 32, 1))
    expected = bare(np.repeat(grey, 3, axis=-1) * 255.0, training=False)
    np.testing.assert_allclose(encoder(grey, training=False), expected, rtol=1e-4, atol=1e-4)


def test_width_is_the_alpha_of_the_mobilenets_and_other_options_reach_the_application():
    encoder = application("MobileNetV3Small", SHAPE, width=0.25, minimalistic=True)
    assert encoder.name == "MobileNetV3Small_w0.25"
    assert encoder.count_params() == _bare("MobileNetV3Small", alpha=0.25, minimalistic=True).count_params()


def test_a_factory_s_feature_map_is_pooled_into_h_and_a_flat_output_is_h():
    encoder = build_encoder(FACTORY, SHAPE)
    assert encoder.name == "tiny_backbone" and encoder.output_shape == (None, 8)
    images = _images()
    feature_map = encoder.get_layer("tiny_backbone")(images, training=False)
    np.testing.assert_allclose(encoder(images, training=False), np.mean(feature_map, axis=(1, 2)), rtol=1e-5)
    assert build_encoder("tests.tiny_backbones:flat", SHAPE).output_shape == (None, 4)


@pytest.mark.parametrize("name", ["MobileNetV3Small", "ResNet50V2", FACTORY])
def test_every_batch_norm_of_a_backbone_is_synchronised_and_stays_so_in_its_copies(name):
    encoder = build_encoder(name, SHAPE)
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(encoder))
    for model in (encoder, copy):
        assert batch_norm_layers(model) and all(norm.synchronized for norm in batch_norm_layers(model))


def test_a_momentum_copy_of_a_subclassed_backbone_keeps_its_batch_norm_synchronised():
    """The copy is built by the model's own code, whose batch norm Keras makes unsynchronised."""
    encoder = build_encoder("tests.tiny_backbones:subclassed", SHAPE)
    head = ProjectionHead(2, 4, 8, batch_norm=True)
    head.build(encoder.output_shape)
    copy = MomentumNetwork(encoder, head)
    bare = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(encoder))
    # What the copy mends: Keras builds the subclassed model's batch norm unsynchronised.
    assert batch_norm_layers(bare) and not any(norm.synchronized for norm in batch_norm_layers(bare))
    for model in (encoder, copy.encoder, head, copy.projection_head):
        assert batch_norm_layers(model) and all(norm.synchronized for norm in batch_norm_layers(model))


def test_batch_norm_of_a_factory_s_model_takes_the_global_batch_on_two_replicas(mirrored):
    """Each replica normalises its half by the statistics of the whole batch: the same
    training-mode output as one device given the whole batch."""
    keras.utils.set_random_seed(0)
    single = build_encoder(FACTORY, SHAPE)
    with mirrored.scope():
        replicated = build_encoder(FACTORY, SHAPE)
    replicated.set_weights(single.get_weights())
    images = _images(8)
    images[4:] *= 0.3  # halves with other statistics: local batch norm would tell
    halves = mirrored.experimental_distribute_values_from_function(
        lambda context: images[4 * context.replica_id_in_sync_group : 4 * (context.replica_id_in_sync_group + 1)]
    )
    outputs = mirrored.run(tf.function(lambda x: replicated(x, training=True)), args=(halves,))
    h = np.concatenate([np.asarray(part) for part in mirrored.experimental_local_results(outputs)])
    np.testing.assert_allclose(h, single(images, training=True), rtol=1e-4, atol=1e-5)


def test_encoder_weights_load_a_file_saved_from_the_encoder(tmp_path):
    keras.utils.set_random_seed(1)
    saved = build_encoder("MobileNetV3Small", SHAPE, width=0.25)
    saved.save_weights(tmp_path / "encoder.weights.h5")
    keras.utils.set_random_seed(2)
    loaded = build_encoder("MobileNetV3Small", SHAPE, width=0.25, weights=tmp_path / "encoder.weights.h5")
    for expected, actual in zip(saved.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(actual, expected)


def test_encoder_weights_load_an_applications_own_h5_file(tmp_path):
    """keras.applications' weight files (e.g. the ImageNet ones, *_notop.h5) are legacy
    .h5, matched layer by layer; the bare application saved as .h5 is such a file."""
    keras.utils.set_random_seed(1)
    bare = _bare("MobileNetV3Small", alpha=0.25)
    bare.save(tmp_path / "mobilenet_v3_small_notop.h5")
    keras.utils.set_random_seed(2)
    loaded = build_encoder("MobileNetV3Small", SHAPE, width=0.25, weights=tmp_path / "mobilenet_v3_small_notop.h5")
    for expected, actual in zip(bare.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(actual, expected)


def test_a_run_starts_from_encoder_weights_and_its_random_baseline_does_not(tmp_path):
    keras.utils.set_random_seed(1)
    build_encoder(FACTORY, SHAPE).save_weights(tmp_path / "start.weights.h5")
    config = _config(tmp_path, encoder=FACTORY, encoder_weights=str(tmp_path / "start.weights.h5"))
    run = prepare(config)
    start = build_encoder(FACTORY, SHAPE, weights=config.encoder_weights).get_weights()
    for expected, actual in zip(start, build_model(run).encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(actual, expected)
    random = run.new_encoder(initial_weights=False).get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(start, random, strict=True))


ERRORS = {
    "a misspelt application": (
        dict(name="mobilenetv3small"),
        "unknown encoder 'mobilenetv3small' (close: MobileNetV3Small",
    ),
    "a lower-case application": (dict(name="vgg16"), "unknown encoder 'vgg16' (close: VGG16, VGG19); choose auto"),
    "a factory module that does not import": (
        dict(name="tests.no_such_module:build"),
        "cannot import tests.no_such_module for encoder tests.no_such_module:build (No module named",
    ),
    "a factory module without the function": (
        dict(name="tests.tiny_backbones:no_such_function"),
        "tests.tiny_backbones has no function no_such_function",
    ),
    "a factory that returns no model": (
        dict(name="tests.tiny_backbones:not_a_model"),
        "tests.tiny_backbones:not_a_model returned Conv2D, not a keras.Model",
    ),
    "a factory whose output is no representation": (
        dict(name="tests.tiny_backbones:sequence"),
        "gives (None, 1024, 3), not h [B, D] or a feature map [B, H, W, C]; pool or flatten",
    ),
    "images smaller than the application takes": (
        dict(name="MobileNetV3Small", input_shape=(16, 16, 3)),
        "keras.applications.MobileNetV3Small cannot be built for 16x16 images (Input size must be at least 32x32",
    ),
    "a width for an application without one": (
        dict(name="ResNet50V2", width=0.5),
        "width=0.5 scales small_cnn, the ResNets and the MobileNets (their alpha); ResNet50V2 has no width",
    ),
    "a width for a factory": (dict(name=FACTORY, width=2.0), "tiny_backbones:build has no width multiplier"),
    "input normalisation for an application": (
        dict(name="MobileNetV3Small", input_normalization="imagenet"),
        "MobileNetV3Small preprocesses its own [0, 1] images: leave input_normalization at none",
    ),
    "a missing weights file": (
        dict(name="MobileNetV3Small", weights="no/such.weights.h5"),
        "encoder_weights no/such.weights.h5 does not exist",
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_bad_backbones_are_one_line_usage_errors(case):
    arguments, message = ERRORS[case]
    arguments = {"input_shape": SHAPE, **arguments}
    with pytest.raises(UsageError) as raised:
        build_encoder(**arguments)
    assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)


def test_weights_of_another_encoder_are_a_one_line_usage_error(tmp_path):
    build_encoder(FACTORY, SHAPE).save_weights(tmp_path / "tiny.weights.h5")
    with pytest.raises(UsageError, match=r"encoder_weights \S+tiny.weights.h5 do not fit MobileNetV3Small") as raised:
        build_encoder("MobileNetV3Small", SHAPE, weights=tmp_path / "tiny.weights.h5")
    assert "\n" not in str(raised.value)


def test_the_config_refuses_an_unknown_encoder_with_the_close_names():
    with pytest.raises(UsageError, match=r"^unknown encoder 'EfficientNetV2b0' \(close: EfficientNetV2B0"):
        PretrainConfig(encoder="EfficientNetV2b0").validate()


def _colour_npz(path, train=128, test=64):
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (train, *SHAPE), dtype=np.uint8),
        y_train=rng.integers(0, 4, train),
        x_test=rng.integers(0, 256, (test, *SHAPE), dtype=np.uint8),
        y_test=rng.integers(0, 4, test),
    )
    return str(path)


def _config(tmp_path, **settings):
    return PretrainConfig(
        **{
            "dataset": _colour_npz(tmp_path / "colour.npz"),
            "batch_size": 64,
            "epochs": 1,
            "precision": "float32",
            "model_dir": str(tmp_path / "run"),
            "verbose": 0,
            **settings,
        }
    )


def test_a_momentum_method_copies_an_application_encoder(tmp_path):
    model = build_model(prepare(_config(tmp_path, method="byol", encoder="MobileNetV3Small", width=0.25)))
    copy = model.target_network.encoder
    assert copy.name == model.encoder.name and all(norm.synchronized for norm in batch_norm_layers(copy))
    for online, target in zip(model.encoder.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(online, target)


@pytest.mark.slow
@pytest.mark.parametrize("encoder, width", [("MobileNetV3Small", 0.25), (FACTORY, 1.0)])
def test_pretrain_with_a_backbone_exports_an_encoder_tensorflow_loads(tmp_path, encoder, width):
    result = pretrain(_config(tmp_path, encoder=encoder, width=width))
    card = json.loads((result.export_path / run_folder.METADATA_FILE).read_text())
    assert card["encoder"] == result.model.encoder.name and card["config"]["encoder"] == encoder
    assert 0 <= card["linear_probe_top1"] <= 1 and 0 <= card["knn_top1"] <= 1
    images = _images(4)
    expected = result.model.encoder(images, training=False)
    exported = tf.saved_model.load(str(result.export_path))
    h = exported.signatures["serve_float"](images=tf.constant(images))["representation"]
    np.testing.assert_allclose(h, expected, rtol=1e-4, atol=1e-5)
    # The evaluations read the model_dir's model.keras in Keras' safe mode.
    whole = load_pretrained(tmp_path / "run")
    np.testing.assert_allclose(whole.encoder(images, training=False), expected, rtol=1e-4, atol=1e-5)
