"""A pretraining run in stages: `prepare` (settings, strategy, data), `build_model`,
`fit` (resuming from the last checkpoint) and `finalize` (model file, figures, probes,
model card, export), each callable on its own. `pretrain` runs them all; it is what
`python -m experiments.pretrain` runs and what a notebook calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import keras
import tensorflow as tf

from contrastive_tf import distribute, storage
from contrastive_tf import run_folder as files
from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.checkpoints import TrainingCheckpoint, load, newest_checkpoint
from contrastive_tf.config import PretrainConfig
from contrastive_tf.data import ImageData, load_data, pretraining_batches, sample_views
from contrastive_tf.encoders import build_encoder, default_encoder
from contrastive_tf.errors import Preempted, UsageError
from contrastive_tf.evaluation import ProbeResult, extract_features, linear_probe, probe_encoder, stratified_sample
from contrastive_tf.export import check_export_target, export_encoder
from contrastive_tf.history import HistoryLog, read_history
from contrastive_tf.initializers import draw_heads
from contrastive_tf.knn import KNN_PROTOCOL, KnnMonitor, knn_accuracy
from contrastive_tf.methods import METHODS, ContrastiveModel, contrastive_model
from contrastive_tf.optimizers import (
    build_optimizer,
    exclude_vectors_from_weight_decay,
    scale_learning_rate,
    warmup_cosine,
)
from contrastive_tf.plots import plot_training_curves, plot_view_pairs
from contrastive_tf.precision import global_precision, resolve_jit_compile, resolve_precision
from contrastive_tf.preemption import StopOnSignal
from contrastive_tf.reports import provenance


@dataclasses.dataclass
class Run:
    """A prepared run: the settings resolved for this machine and the data loaded."""

    config: PretrainConfig
    strategy: tf.distribute.Strategy
    precision: str
    jit_compile: bool
    data: ImageData
    model_dir: storage.Location
    export_dir: storage.Location

    @property
    def steps_per_epoch(self) -> int:
        return self.data.pretrain.num_examples // self.config.batch_size

    @property
    def labelled(self) -> bool:
        """Whether every training image has a label: the online probe, and methods that
        learn from labels, need that."""
        return self.data.unlabeled is None and bool(self.data.num_classes)

    @property
    def encoder_name(self) -> str:
        """The configured encoder, or for "auto" `default_encoder` of the data's images."""
        return default_encoder(self.data.image_shape) if self.config.encoder == "auto" else self.config.encoder

    def new_encoder(self, initial_weights: bool = True) -> keras.Model:
        """A new encoder of the run's architecture, with the config's encoder_weights loaded
        if set and `initial_weights`, else randomly initialised."""
        config = self.config
        return build_encoder(
            self.encoder_name,
            self.data.image_shape,
            config.width,
            config.sk_ratio,
            config.pooling_grid,
            config.zero_init_residual,
            config.input_normalization,
            config.encoder_weights if initial_weights else None,
            config.patch_size,
            config.vit_pooling,
            config.frozen_patch_projection,
            config.initializer,
            config.fused_batch_norm,
        )

    def batches_from(self, step: int) -> tf.data.Dataset:
        """The training batches from `step` on, in the order an uninterrupted run sees them."""
        # A new dataset each time: a second iterator of the same one would shuffle anew.
        config = self.config
        return pretraining_batches(
            self.data,
            config.batch_size,
            seed=config.seed,
            first_step=step,
            epochs=None,
            num_views=config.num_views,
            crop_scale=(config.crop_scale_min, 1.0),
            shard=distribute.input_shard(self.strategy),
        )


@dataclasses.dataclass
class PretrainResult:
    model: ContrastiveModel
    history: dict[str, list[float]]
    export_path: storage.Location | None
    probe: ProbeResult | None
    random_probe: ProbeResult | None
    figures: list[storage.Location]
    knn_top1: float | None = None
    # What the end-of-run scores ran on and which were skipped, as the model card says.
    final_evaluation: dict = dataclasses.field(default_factory=dict)


def prepare(config: PretrainConfig) -> Run:
    """Checks `config`, makes its strategy, resolves precision and XLA for the hardware,
    loads the data, and refuses an existing export now rather than after training."""
    config.validate()
    strategy = distribute.build_strategy(config.strategy, config.tpu_address)
    distribute.check_batch_size(config.batch_size, strategy)
    precision = resolve_precision(config.precision, strategy)
    jit_compile = resolve_jit_compile(config.jit_compile, strategy)
    model_dir = storage.location(config.model_dir)
    storage.check_reachable(model_dir)
    export_dir = check_export_target(config.export_dir or storage.join(model_dir, files.EXPORT_DIR), config.overwrite)
    data = load_data(
        config.dataset,
        config.data_dir,
        config.image_size,
        train_split=config.train_split,
        test_split=config.test_split,
        image_key=config.image_key,
        label_key=config.label_key,
        record_order=config.record_order,
        num_classes=config.num_classes,
    )
    run = Run(config, strategy, precision, jit_compile, data, model_dir, export_dir)
    run.batches_from(0)  # fails early when the data holds less than one batch
    if METHODS[config.method].needs_labels and not run.labelled:
        raise UsageError(
            f"method {config.method} learns from labels, and {data.name} has unlabelled training images; "
            "use a labelled data set or another method"
        )
    return run


def build_model(run: Run) -> ContrastiveModel:
    """The compiled model of the run's method, in its strategy's scope and precision,
    with its optimizer built."""
    config, data = run.config, run.data
    total_steps = config.epochs * run.steps_per_epoch
    with run.strategy.scope(), global_precision(run.precision):
        # Inside the scope too: its random-stream counter must be a mirrored variable, or
        # the replicas would share one and draw other views than on several workers.
        augmenter = SimCLRAugment(
            color_jitter_strength=config.color_jitter_strength,
            blur=config.blur,
            crop_scale=(config.crop_scale_min, 1.0),
            seed=config.seed,
            flip=config.flip,
            rotation_degrees=config.rotation_degrees,
            shear_degrees=config.shear_degrees,
        )
        model = contrastive_model(
            config.method,
            run.new_encoder(),
            augmenter,
            num_views=config.num_views,
            num_classes=data.num_classes if run.labelled else None,
            total_steps=total_steps,
            batch_size=config.batch_size,
            **config.method_settings(),
        )
        model.build((None, *data.image_shape))
        draw_heads(model, config.initializer)
        peak = scale_learning_rate(config.learning_rate, config.batch_size, config.lr_scaling)
        schedule = warmup_cosine(
            peak,
            total_steps,
            int(config.warmup_epochs * run.steps_per_epoch),
            start=config.warmup_start_learning_rate,
            steps_per_epoch=run.steps_per_epoch if config.lr_schedule_interval == "epoch" else None,
        )
        optimizer = build_optimizer(
            config.optimizer, schedule, config.weight_decay, config.optimizer_momentum, **config.lars_settings()
        )
        probe = model.probe.trainable_variables if model.probe is not None else []
        exclude_vectors_from_weight_decay(
            optimizer, model.trainable_variables, plain=probe, decay_vectors=config.weight_decay_vectors
        )
        model.compile(optimizer=optimizer, jit_compile=run.jit_compile)
        # Now, not at the first step: under multi_worker every worker must create the same
        # variables in the same order, whether or not it has a checkpoint to restore.
        optimizer.build(model.trainable_variables)
    return model


def _lock(run: Run) -> contextlib.AbstractContextManager:
    """The model_dir's lock for the chief, which alone writes there; nothing for the others."""
    return files.RunLock(run.model_dir) if distribute.is_chief(run.strategy) else contextlib.nullcontext()


def fit(run: Run, model: ContrastiveModel) -> dict[str, list[float]]:
    """Trains `model` to `config.epochs`, resuming from the newest checkpoint in the
    model_dir, and returns the per-epoch history of the whole run (empty on workers
    other than the chief, which alone writes files).

    Raises:
        Preempted: SIGTERM or SIGINT arrived; training stopped after that step and saved
            a checkpoint there.
    """
    with _lock(run):
        return _fit(run, model)


def _fit(run: Run, model: ContrastiveModel) -> dict[str, list[float]]:
    config, model_dir = run.config, run.model_dir
    storage.makedirs(model_dir)
    checkpoint_dir = storage.join(model_dir, files.CHECKPOINTS_DIR)
    with run.strategy.scope(), newest_checkpoint(checkpoint_dir) as newest:
        # All workers restore or none do: loading creates variables, each a collective.
        step = distribute.agree_across_workers(run.strategy, newest.step if newest else 0, "checkpoints")
        step = load(model, newest) if step else 0
    if config.verbose != 0:
        resuming = f", resuming from the checkpoint at step {step}" if step else ""
        print(f"training {model.encoder.name} in {run.precision}, XLA {'on' if run.jit_compile else 'off'}{resuming}")
    is_chief = distribute.is_chief(run.strategy)
    checkpoints = TrainingCheckpoint(checkpoint_dir if is_chief else None, config.checkpoint_every_steps)
    stopper = StopOnSignal()
    callbacks = [checkpoints, stopper]
    if is_chief:
        callbacks = [
            # First, so that the logs after it include its accuracy.
            *_knn_monitor(run),
            # The CSV row of an epoch is written before its checkpoint: a kill in between
            # repeats that epoch on resume, and `read_history` keeps the repeat's row.
            HistoryLog(storage.join(model_dir, files.HISTORY_FILE)),
            checkpoints,
            stopper,
            keras.callbacks.TensorBoard(str(storage.join(model_dir, files.LOGS_DIR)), update_freq="epoch"),
        ]
    steps_per_epoch = run.steps_per_epoch
    epoch, done = divmod(step, steps_per_epoch)
    # One iterator per `fit`, not per epoch: a fresh one each epoch stalls 1-5 s while
    # tf.data tears the old one down. Skipping the batches already trained on makes a
    # resumed run see the data in the order an uninterrupted one does.
    verbose = "auto" if config.verbose is None else config.verbose
    fit_model = functools.partial(model.fit, callbacks=callbacks, verbose=verbose, shuffle=False)
    with global_precision(run.precision), stopper.installed():
        if done and epoch < config.epochs:  # killed mid-epoch: finish that epoch first
            fit_model(
                run.batches_from(step), initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps_per_epoch - done
            )
            epoch, step = epoch + 1, (epoch + 1) * steps_per_epoch
        if epoch < config.epochs and checkpoints.nan_epoch is None and stopper.signal_name is None:
            fit_model(
                run.batches_from(step), initial_epoch=epoch, epochs=config.epochs, steps_per_epoch=steps_per_epoch
            )
    if stopper.signal_name is not None:
        checkpoints.save()
        step = int(model.optimizer.iterations.numpy())  # a mirrored variable under several workers
        raise Preempted(
            f"stopped by {stopper.signal_name} after step {step}, with a checkpoint in "
            f"{checkpoint_dir}; rerun the same command to resume there"
        )
    if checkpoints.nan_epoch is not None:
        raise UsageError(
            f"the loss became NaN in epoch {checkpoints.nan_epoch + 1}; lower learning_rate (or raise "
            f"temperature) and rerun: it resumes from the last good checkpoint in {checkpoint_dir}"
        )
    return read_history(storage.join(model_dir, files.HISTORY_FILE)) if is_chief else {}


def _knn_monitor(run: Run) -> list[keras.callbacks.Callback]:
    """The kNN monitor when the run asks for it and has labelled training data. It scores a
    validation share carved from the training split, never the test split, which only the
    final evaluation reads. It stays off under multi_worker, where it has not been tested."""
    data, every = run.data, run.config.knn_every_epochs
    if not data.num_classes or not every or distribute.is_multi_worker(run.strategy):
        return []
    return [KnnMonitor.from_training_split(data.train, data.num_classes, every, seed=run.config.seed)]


# The evaluations at the end of a run, each with the setting that turns it off.
FINAL_EVALUATIONS = {
    "linear_probe": "final_linear_probe",
    "knn": "final_knn",
    "random_baseline": "final_random_baseline",
}


def finalize(
    run: Run, model: ContrastiveModel, history: dict[str, list[float]], *, export: bool = True
) -> PretrainResult:
    """What the chief does after training: saves the whole model and the figures, scores
    the encoder (linear probe and kNN on the test split) and a randomly initialised one as
    the baseline, as far as the config's final_* settings ask, and exports the encoder with
    its card (unless `export` is False)."""
    with _lock(run):
        return _finalize(run, model, history, export=export)


def _finalize(run: Run, model: ContrastiveModel, history: dict[str, list[float]], *, export: bool) -> PretrainResult:
    config, data, model_dir = run.config, run.data, run.model_dir
    storage.write_atomically(storage.join(model_dir, files.MODEL_FILE), model.save)
    figures = [storage.join(model_dir, name) for name in (files.VIEWS_FIGURE, files.CURVES_FIGURE)]
    sample_images, crops = sample_views(data, 8, (config.crop_scale_min, 1.0), config.seed)
    plot_view_pairs(sample_images, model.augmenter, figures[0], crops=crops)
    plot_training_curves(history, figures[1])

    with global_precision(run.precision):
        # A copy of the encoder outside the strategy: under multi_worker the trained one
        # would wait for the other workers at every call.
        encoder = run.new_encoder(initial_weights=False)
        encoder.set_weights(model.encoder.get_weights())
        evaluation, probe, random_probe, knn_top1 = _final_evaluation(run, encoder)
        export_path = None
        if export:
            card = _model_card(run, model, encoder, history, evaluation, probe, random_probe, knn_top1)
            export_path = export_encoder(
                encoder,
                run.export_dir,
                data.image_shape,
                config.overwrite,
                card,
                tflite=config.export_tflite,
                sample_images=sample_images,
            )
    return PretrainResult(model, history, export_path, probe, random_probe, figures, knn_top1, evaluation)


def _skipped(run: Run) -> dict[str, str]:
    """Why each end-of-run evaluation that will not run is skipped."""
    if run.data.test is None or not run.data.num_classes:
        return {name: f"skipped: {run.data.name} has no labelled test split" for name in FINAL_EVALUATIONS}
    settings = FINAL_EVALUATIONS.items()
    return {name: f"skipped: {setting} is off" for name, setting in settings if not getattr(run.config, setting)}


def _final_evaluation(
    run: Run, encoder: keras.Model
) -> tuple[dict, ProbeResult | None, ProbeResult | None, float | None]:
    """The end-of-run scores (linear probe, kNN, random-weights probe) that the config asks
    for, and what they ran on, as the model card records it. They learn from about
    final_eval_train_examples training images, a stratified sample drawn with the run's
    seed (the whole split, in its order, when it holds no more), and score the whole test
    split, as papers report it."""
    config, data, skipped = run.config, run.data, _skipped(run)
    evaluation = {
        "train_examples": None,
        "train_split_examples": data.train.num_examples,
        "train_sample": None,
        "test_examples": None,
    }
    probe = random_probe = knn_top1 = None
    if len(skipped) < len(FINAL_EVALUATIONS):
        train = stratified_sample(data.train, config.final_eval_train_examples, config.seed)
        sample = "the whole training split" if train is data.train else f"stratified by class, seed {config.seed}"
        evaluation |= {
            "train_examples": train.num_examples,
            "train_sample": sample,
            "test_examples": data.test.num_examples,
        }
        if "linear_probe" not in skipped or "knn" not in skipped:
            features = (extract_features(encoder, train), extract_features(encoder, data.test))
            probe = None if "linear_probe" in skipped else linear_probe(*features[0], *features[1], data.num_classes)
            knn_top1 = None if "knn" in skipped else knn_accuracy(*features, data.num_classes)
        if "random_baseline" not in skipped:
            keras.utils.set_random_seed(config.seed)
            random_probe = probe_encoder(run.new_encoder(initial_weights=False), train, data.test, data.num_classes)
    evaluation |= {name: skipped.get(name, "ran") for name in FINAL_EVALUATIONS}
    return evaluation, probe, random_probe, knn_top1


def _model_card(run: Run, model, encoder, history, evaluation, probe, random_probe, knn_top1) -> dict:
    """What the run says about the export: its output, training and scores, and what the
    scores were computed on (the export adds what it takes, see `export_encoder`)."""
    return {
        "encoder": encoder.name,
        "method": type(model).__name__,
        "dataset": run.data.name,
        "views": "each cropped on the host from the original image, evaluation on the 87.5% centre crop"
        if run.data.host_crops
        else "cropped from the whole image as loaded",
        "unreadable_files_skipped": run.data.skipped_files(),
        "outputs": "representation: float32 [B, D], the encoder output h (the projection head is not exported)",
        "epochs_trained": len(next(iter(history.values()), [])),
        "final_loss": history.get("loss", [None])[-1],
        "linear_probe_top1": probe.top1_accuracy if probe else None,
        "knn_top1": knn_top1,
        "random_encoder_linear_probe_top1": random_probe.top1_accuracy if random_probe else None,
        "final_evaluation": evaluation,
        "evaluation_protocol": "linear probe: L2 logistic regression on frozen, standardised h of the training "
        f"images (final_evaluation.train_examples), scored on the test split; kNN: {KNN_PROTOCOL}",
        "precision": run.precision,
        "jit_compile": run.jit_compile,
        "config": dataclasses.asdict(run.config),
        "caveats": "A SavedModel is code: load it only from sources you trust. An encoder trained in mixed "
        "precision computes in it.",
        **provenance(),
    }


def pretrain(config: PretrainConfig) -> PretrainResult:
    """Runs (or resumes) pretraining, then the probes, figures and export.

    Writes into `config.model_dir`: `checkpoints/` (resume state), `logs/` (TensorBoard),
    `history.csv`, `model.keras` (the whole model), `views.png` and `training_curves.png`
    (names in `run_folder`). The encoder is exported to `config.export_dir` (default
    `model_dir/export`). Only the chief worker writes; the others return no export.
    """
    run = prepare(config)
    keras.utils.set_random_seed(config.seed)
    model = build_model(run)
    with _lock(run):
        history = fit(run, model)
        if distribute.is_chief(run.strategy):
            result = finalize(run, model, history)
        else:
            result = PretrainResult(model, {}, None, None, None, [])
    distribute.wait_for_workers(run.strategy)
    return result
