"""The pretraining stages, called in-process: prepare, build_model, fit (with resume) and
finalize, and the run folder they leave."""

import json

import keras
import numpy as np
import pytest

from contrastive_tf import pretraining, run_folder
from contrastive_tf.batch_norm import BatchNormalization
from contrastive_tf.config import PretrainConfig
from contrastive_tf.evaluation import split_labels, stratified_indices
from contrastive_tf.pretraining import FINAL_EVALUATIONS, build_model, finalize, fit, prepare, pretrain
from contrastive_tf.run_folder import load_pretrained


def _config(mnist_subset, model_dir, **settings) -> PretrainConfig:
    return PretrainConfig(
        **{
            "dataset": str(mnist_subset),
            "width": 0.25,
            "batch_size": 500,
            "epochs": 1,
            "knn_every_epochs": 0,
            "precision": "float32",
            "model_dir": str(model_dir),
            "verbose": 0,
            **settings,
        }
    )


def test_prepare_resolves_the_settings_and_loads_the_data(mnist_subset, tmp_path):
    run = prepare(_config(mnist_subset, tmp_path))
    assert run.precision == "float32" and run.jit_compile is False
    assert run.steps_per_epoch == 4000 // 500 and run.encoder_name == "small_cnn"
    assert run.export_dir == (tmp_path / run_folder.EXPORT_DIR).resolve()
    assert not tmp_path.joinpath(run_folder.CHECKPOINTS_DIR).exists()  # preparing writes nothing


def test_build_model_takes_the_methods_defaults_unless_set(mnist_subset, tmp_path):
    model = build_model(prepare(_config(mnist_subset, tmp_path, method="supcon")))
    assert model.temperature == 0.1  # SupCon's paper
    model = build_model(prepare(_config(mnist_subset, tmp_path, method="moco", temperature=0.3, queue_size=1000)))
    assert (model.temperature, model.target_momentum, model.queue.size) == (0.3, 0.99, 1000)
    assert model.optimizer.built  # every worker creates the same variables before restoring


def test_build_model_gives_lars_the_lars_settings(mnist_subset, tmp_path):
    settings = dict(optimizer="lars", lars_trust_coefficient=0.02, lars_clip_lr=True, lars_variant="solo_learn")
    optimizer = build_model(prepare(_config(mnist_subset, tmp_path, **settings))).optimizer
    assert (optimizer.trust_coefficient, optimizer.clip_lr, optimizer.variant) == (0.02, True, "solo_learn")


def test_build_model_gives_the_optimizer_the_schedule_and_decay_settings(mnist_subset, tmp_path):
    settings = dict(
        optimizer="sgd",
        warmup_start_learning_rate=3e-5,
        lr_schedule_interval="epoch",
        weight_decay_vectors=True,
        optimizer_momentum=0.0,
    )
    run = prepare(_config(mnist_subset, tmp_path, **settings))
    optimizer = build_model(run).optimizer
    assert optimizer.momentum == 0.0
    schedule = optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(3e-5)
    assert float(schedule(run.steps_per_epoch + 1)) == float(schedule(run.steps_per_epoch))
    assert all("linear_probe" in name for name in optimizer._exclude_from_weight_decay)  # only the probe


@pytest.mark.parametrize("initializer", ["pytorch", "simclr"])
def test_build_model_draws_the_heads_as_the_initializer_and_the_target_follows(mnist_subset, tmp_path, initializer):
    """torch's nn.Linear default, U(+-1/sqrt(fan_in)) for weight and bias (lightly's and
    solo-learn's heads); google-research/simclr tf2/model.py LinearLayer, normal 0.01 and no
    bias. BYOL's target network starts from the redrawn online weights."""
    model = build_model(prepare(_config(mnist_subset, tmp_path, method="byol", initializer=initializer)))
    layers = [layer for head in model.heads() for layer in head._flatten_layers()]
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    assert len(dense) == 4
    for layer in dense:
        kernel, bound = layer.kernel.numpy(), layer.kernel.shape[0] ** -0.5
        if initializer == "pytorch":
            assert np.abs(kernel).max() <= bound and kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
            if layer.bias is not None:
                assert 0 < np.abs(layer.bias.numpy()).max() <= bound
        else:
            assert kernel.std() == pytest.approx(0.01, rel=0.05)
            assert layer.bias is None or not np.any(layer.bias.numpy())
    online = [*model.encoder.trainable_weights, *model.projection_head.trainable_weights]
    target = [*model.target_network.encoder.trainable_weights, *model.target_network.projection_head.trainable_weights]
    for mine, theirs in zip(target, online):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_build_model_builds_the_encoder_the_config_describes(mnist_subset, tmp_path):
    config = _config(mnist_subset, tmp_path, encoder="resnet18", width=0.125, zero_init_residual=False)
    encoder = build_model(prepare(config)).encoder
    norms = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert encoder.name.startswith("resnet18") and all(float(np.min(norm.gamma.numpy())) == 1.0 for norm in norms)


def test_build_model_makes_the_views_the_augmentation_settings_ask_for(mnist_subset, tmp_path):
    config = _config(
        mnist_subset, tmp_path, crop_scale_min=0.35, rotation_degrees=15, shear_degrees=10, color_jitter_strength=0.4
    )
    augmenter = build_model(prepare(config)).augmenter
    assert (augmenter.crop_scale, augmenter.rotation_degrees, augmenter.color_jitter_strength) == ((0.35, 1.0), 15, 0.4)
    assert (augmenter.rotation.max_degrees, augmenter.shear.max_degrees) == (15, 10)


def test_build_model_pools_h_as_the_config_asks(mnist_subset, tmp_path):
    run = prepare(_config(mnist_subset, tmp_path, encoder="small_cnn", pooling_grid=2))
    assert build_model(run).encoder.output_shape == run.new_encoder().output_shape == (None, 4 * 64)  # width 0.25


def test_a_run_fuses_its_encoders_batch_norm_as_the_config_asks(mnist_subset, tmp_path):
    for fused in (False, True):
        encoder = build_model(prepare(_config(mnist_subset, tmp_path, fused_batch_norm=fused))).encoder
        assert {layer.fused for layer in encoder.layers if isinstance(layer, BatchNormalization)} == {fused}


def test_fit_resumes_where_the_last_run_stopped(mnist_subset, tmp_path):
    run = prepare(_config(mnist_subset, tmp_path))
    keras.utils.set_random_seed(0)
    first = fit(run, build_model(run))
    assert len(first["loss"]) == 1
    longer = prepare(_config(mnist_subset, tmp_path, epochs=2))
    model = build_model(longer)
    history = fit(longer, model)
    assert int(model.optimizer.iterations) == 2 * run.steps_per_epoch
    assert len(history["loss"]) == 2 and history["loss"][0] == first["loss"][0]


def test_finalize_can_skip_the_evaluations_and_the_export(mnist_subset, tmp_path):
    off = {setting: False for setting in FINAL_EVALUATIONS.values()}
    run = prepare(_config(mnist_subset, tmp_path, **off))
    model = build_model(run)
    result = finalize(run, model, fit(run, model), export=False)
    assert result.probe is None and result.random_probe is None and result.knn_top1 is None
    assert result.export_path is None and not run.export_dir.exists()
    assert result.final_evaluation["train_examples"] is None  # nothing was read for them
    for name in (run_folder.MODEL_FILE, run_folder.VIEWS_FIGURE, run_folder.CURVES_FIGURE, run_folder.HISTORY_FILE):
        assert (tmp_path / name).stat().st_size > 0


def _card(result) -> dict:
    return json.loads((result.export_path / run_folder.METADATA_FILE).read_text())


# Where each end-of-run evaluation's score goes in the model card, and the function that computes it.
_SCORES = {
    "linear_probe": ("linear_probe_top1", "linear_probe"),
    "knn": ("knn_top1", "knn_accuracy"),
    "random_baseline": ("random_encoder_linear_probe_top1", "probe_encoder"),
}


@pytest.mark.parametrize("evaluation", FINAL_EVALUATIONS)
def test_each_final_evaluation_can_be_turned_off_and_the_card_says_so(mnist_subset, tmp_path, monkeypatch, evaluation):
    setting = FINAL_EVALUATIONS[evaluation]
    monkeypatch.setattr(pretraining, _SCORES[evaluation][1], None)  # calling it would fail
    run = prepare(_config(mnist_subset, tmp_path, **{setting: False}))
    card = _card(finalize(run, build_model(run), {"loss": [1.0]}))
    assert card["final_evaluation"][evaluation] == f"skipped: {setting} is off" and card[_SCORES[evaluation][0]] is None
    for other in set(FINAL_EVALUATIONS) - {evaluation}:
        assert card["final_evaluation"][other] == "ran" and 0 <= card[_SCORES[other][0]] <= 1


def test_export_tflite_adds_the_tflite_encoder_compared_on_training_images(mnist_subset, tmp_path, caplog):
    off = {setting: False for setting in FINAL_EVALUATIONS.values()}
    run = prepare(_config(mnist_subset, tmp_path, export_tflite=True, **off))
    with caplog.at_level("INFO", logger="contrastive_tf.export"):
        card = _card(finalize(run, build_model(run), {"loss": [1.0]}))
    assert card["tflite"]["compared_on"] == "8 images given to the export"  # the first training images
    assert card["tflite"]["max_abs_difference"] < 1e-4 and run_folder.TFLITE_FILE in caplog.text
    assert (run.export_dir / run_folder.TFLITE_FILE).stat().st_size == card["tflite"]["bytes"]
    assert card["image_size"] == "any height and width (trained at 28x28)" and card["config"]["export_tflite"]


def test_the_final_evaluations_learn_from_a_stratified_sample_and_the_card_says_how_many(mnist_subset, tmp_path):
    run = prepare(_config(mnist_subset, tmp_path, final_eval_train_examples=1000, final_knn=False, seed=3))
    result = finalize(run, build_model(run), {"loss": [1.0]})
    labels = split_labels(run.data.train)
    chosen = stratified_indices(labels, 1000 / 4000, seed=3)  # a quarter of every class, rounded
    assert result.probe.num_train == result.random_probe.num_train == len(chosen) == pytest.approx(1000, abs=5)
    assert _card(result)["final_evaluation"] == {
        "train_examples": len(chosen),
        "train_split_examples": 4000,
        "train_sample": "stratified by class, seed 3",
        "test_examples": 1000,
        "linear_probe": "ran",
        "knn": "skipped: final_knn is off",
        "random_baseline": "ran",
    }


def test_pretrain_probes_beside_random_weights_and_exports_a_card(mnist_subset, tmp_path):
    result = pretrain(_config(mnist_subset, tmp_path, epochs=2, batch_size=250))
    # Two short epochs need not beat random weights; tests/e2e's real run must.
    assert result.probe.num_test == result.random_probe.num_test == 1000
    assert 0.1 < result.random_probe.top1_accuracy < 1 and 0 <= result.knn_top1 <= 1
    card = json.loads((result.export_path / run_folder.METADATA_FILE).read_text())
    assert card["linear_probe_top1"] == pytest.approx(result.probe.top1_accuracy)
    assert card["config"]["batch_size"] == 250 and card["method"] == "SimCLR"
    # Below final_eval_train_examples the evaluations learn from the whole training split.
    assert result.probe.num_train == card["final_evaluation"]["train_examples"] == 4000
    assert card["final_evaluation"]["train_sample"] == "the whole training split"
    # An app reads the export; an evaluation also reads the model_dir's whole model.
    assert load_pretrained(result.export_path).image_shape == (28, 28, 1)
    assert load_pretrained(tmp_path).model is not None


def test_a_model_dir_from_before_the_rename_is_still_read(mnist_subset, tmp_path):
    run = prepare(_config(mnist_subset, tmp_path))
    model = build_model(run)
    model.save(tmp_path / run_folder.LEGACY_MODEL_FILES[0])
    loaded = load_pretrained(tmp_path)
    for saved, read in zip(model.encoder.weights, loaded.encoder.weights):
        np.testing.assert_array_equal(saved, read)
