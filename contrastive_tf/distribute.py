"""Choosing a `tf.distribute` strategy by name, and what a train step needs to be right
across replicas and workers."""

from __future__ import annotations

import keras
import tensorflow as tf

from contrastive_tf.errors import UsageError

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def use_logical_cpus(count: int) -> None:
    """Splits the CPU into `count` logical devices, so `mirrored` can be tried without
    GPUs. Must run before TensorFlow first touches a device."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def build_strategy(name: str = "auto", tpu_address: str | None = None) -> tf.distribute.Strategy:
    """The strategy called `name`.

    auto: mirrored over all GPUs when there are several, else TensorFlow's default
        strategy (one device, placed automatically). The default strategy hands the
        dataset to `fit` as it is; OneDeviceStrategy rebuilds its input pipeline every
        epoch, which costs seconds per epoch on a CPU.
    one_device: the first GPU, else the CPU, through OneDeviceStrategy.
    mirrored: all local GPUs, or all logical CPUs when there is no GPU.
    multi_worker: MultiWorkerMirroredStrategy configured by the TF_CONFIG variable.
    tpu: the TPU at `tpu_address` ("" or None for a local or Cloud TPU VM).
    """
    if name == "multi_worker":
        # Before anything lists devices: that starts TensorFlow's runtime, after which
        # collectives can no longer be configured.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) <= 1:
            return tf.distribute.get_strategy()
        name = "mirrored"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise UsageError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def check_batch_size(global_batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The per-replica batch; raises UsageError unless it is whole and at least 2."""
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise UsageError(
            f"batch_size {global_batch_size} does not divide by the {replicas} replicas; use a multiple of {replicas}"
        )
    if global_batch_size // replicas < 2:
        raise UsageError(
            f"batch_size {global_batch_size} gives {global_batch_size // replicas} image(s) per replica; "
            f"NT-Xent needs at least 2, so use batch_size >= {2 * replicas}"
        )
    return global_batch_size // replicas


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except on the non-chief
    workers of a multi-worker cluster (the chief is task "chief", else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if resolver.task_type in (None, "chief") or not cluster:
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several worker processes (MultiWorkerMirroredStrategy
    under a TF_CONFIG that lists more than one task)."""
    return getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)()


def input_shard(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(workers, this worker's index): the share of a streamed data set's files this process
    reads. (1, 0) outside a multi-worker cluster."""
    if not is_multi_worker(strategy):
        return 1, 0
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    # The chief first, then the workers by index, as tf.distribute numbers input pipelines.
    tasks = [("chief", i) for i in range(len(cluster.get("chief", [])))]
    tasks += [("worker", i) for i in range(len(cluster.get("worker", [])))]
    return len(tasks), tasks.index((resolver.task_type, resolver.task_id))


def gather_from_workers(strategy: tf.distribute.Strategy, value: tf.Tensor) -> tf.Tensor:
    """The scalar `value` of every worker (one device each), as a vector: a collective
    that every worker must call."""
    local = strategy.experimental_distribute_values_from_function(lambda _: tf.reshape(value, [1]))
    return strategy.gather(local, axis=0)


def wait_for_workers(strategy: tf.distribute.Strategy) -> None:
    """Returns when every worker has called it: a collective that every worker must call.

    At the end of a run the chief still probes and exports while the others are done; a
    worker that exited then would stop sending heartbeats to the coordination service the
    chief hosts, and the chief would report it as crashed after a run that went well."""
    if is_multi_worker(strategy):
        gather_from_workers(strategy, tf.constant(0, tf.int64))


def agree_across_workers(strategy: tf.distribute.Strategy, step: int, what: str) -> int:
    """`step` if every worker holds the same value, else UsageError.

    Workers that resumed from different checkpoints would train on different batches
    and hang or diverge, so this is checked before training."""
    if not is_multi_worker(strategy):
        return step
    steps = sorted(set(gather_from_workers(strategy, tf.constant(step, tf.int64)).numpy().tolist()))
    if len(steps) > 1:
        raise UsageError(
            f"the workers found different {what} (steps {', '.join(map(str, steps))}); give every worker "
            "the same model_dir on storage they all share"
        )
    return step


def minimize(optimizer: keras.optimizers.Optimizer, tape: tf.GradientTape, loss: tf.Tensor, variables: list) -> None:
    """One optimizer step on `loss`, recorded by `tape`, inside a replica's train step.
    Keras sums the replicas' gradients, so each replica contributes its share of the mean."""
    with tape:
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        scaled = optimizer.scale_loss(loss / replicas)
    optimizer.apply(tape.gradient(scaled, variables), variables)


def step_logs(metrics: list[keras.metrics.Metric]) -> dict[str, tf.Tensor]:
    """What a train step returns: each metric's result. Under several workers Keras
    averages logs along axis 0, which a scalar lacks (keras-team/keras#20585); the mean of
    [1]-vectors is the scalar mean."""
    logs = {metric.name: metric.result() for metric in metrics}
    if is_multi_worker(tf.distribute.get_strategy()):
        logs = {name: value[None] for name, value in logs.items()}
    return logs
