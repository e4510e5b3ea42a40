"""Where a recipe's training step spends its time, op by op, from TensorFlow's profiler.

Builds the recipe's model and data as `python -m experiments.pretrain --flagfile=FILE`
would (nothing is saved), runs `--warmup` steps, then `--steps` steps under
`tf.profiler.experimental`, and prints each part's share of the ops' summed self time
(CPU time over all threads, so it adds up to 100% however many cores ran at once):

    python scripts/step_profile.py --config=configs/cpu_cifar10.flags --override=--dataset=DIR
    python scripts/step_profile.py --config=configs/cpu_cifar10.flags --override=--dataset=DIR \\
        --override=--precision=float32

Parts: the augmentation, the online probe and the optimizer update by the name scope their
ops run in (Keras names ops after their layer); the rest by op type: convolutions and their
gradients, batch norm and its gradient, matrix products, casts, and everything element-wise
or else. `--top` op types follow. The profile's trace stays in --trace_dir for TensorBoard's
profile plugin.

The ops' table comes from TensorFlow's own converter of the trace
(`tensorflow.python.profiler.internal._pywrap_profiler_plugin`, the one TensorBoard's profile
plugin calls); it is a private module, which is why this is a script and not part of the
package.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# Each part and its test on an op's full name (lower case) and type; the first that holds
# names the op's part. Keras names ops after the layer (and optimizer) they run in.
PARTS = (
    ("augmentation", lambda name, kind: "augment" in name),
    ("online probe", lambda name, kind: "probe" in name),
    ("convolution", lambda name, kind: "Conv2D" in kind or "Conv3D" in kind or "DepthwiseConv" in kind),
    ("batch norm", lambda name, kind: "BatchNorm" in kind or "batch_norm" in name),
    ("activation", lambda name, kind: "Relu" in kind or "Gelu" in kind or "Sigmoid" in kind),
    ("matrix product", lambda name, kind: "MatMul" in kind or "Einsum" in kind),
    ("cast", lambda name, kind: kind == "Cast"),
)


def part_of(name: str, kind: str, optimizer: str) -> str:
    """The part of the step an op of full name `name` and type `kind` belongs to, the
    optimizer's ops being those in the name scope `optimizer`."""
    lowered = name.lower()
    if f"/{optimizer}/" in lowered or lowered.startswith(f"{optimizer}/"):
        return "optimizer update"
    for part, test in PARTS:
        if test(lowered, kind):
            return part
    return "element-wise and other"


def op_table(trace_dir: str) -> list[tuple[str, str, float]]:
    """(full name, type, self time in us) of every op the profiler saw on the host in the
    newest profile under `trace_dir` (each run adds a folder named for its start time)."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    paths = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    newest = max(os.path.dirname(path) for path in paths)
    paths = [path for path in paths if os.path.dirname(path) == newest]
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(data.decode())
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    rows = [
        dict(zip(columns, [cell["v"] if cell else None for cell in row["c"]], strict=True)) for row in table["rows"]
    ]
    return [(row["operation"], row["type"], row["total_self_time"]) for row in rows if row["type"] != "IDLE"]


def _profile_after(warmup: int, trace_dir: str):
    """A Keras callback that profiles every step after the first `warmup`."""
    import keras
    import tensorflow as tf

    class ProfileAfter(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == warmup:
                tf.profiler.experimental.start(trace_dir)

        def on_train_end(self, logs=None):
            tf.profiler.experimental.stop()

    return ProfileAfter()


def profile(config_file: str, overrides: list[str], steps: int, warmup: int, trace_dir: str, top: int) -> None:
    from contrastive_tf.config import PretrainConfig
    from contrastive_tf.precision import global_precision
    from contrastive_tf.pretraining import build_model, prepare
    from experiments.cli import config_from_argv

    config = config_from_argv(PretrainConfig, [f"--flagfile={config_file}", *overrides])
    with tempfile.TemporaryDirectory() as model_dir:
        run = prepare(dataclasses.replace(config, model_dir=model_dir, export_dir=None))
        model = build_model(run)
        with global_precision(run.precision):
            model.fit(
                run.batches_from(0),
                steps_per_epoch=warmup + steps,
                epochs=1,
                verbose=0,
                callbacks=[_profile_after(warmup, trace_dir)],
            )
    ops = op_table(trace_dir)
    total = sum(time for _, _, time in ops)
    parts = collections.Counter()
    kinds = collections.Counter()
    for name, kind, time in ops:
        parts[part_of(name, kind, model.optimizer.name.lower())] += time
        kinds[kind] += time
    print(
        f"{config_file} {' '.join(overrides)}: {run.precision}, batch {config.batch_size}, {steps} steps profiled, "
        f"{total / 1e3 / steps:.1f} ms of op self time per step"
    )
    print("\n| part | share of op time |\n|---|---|")
    for part, time in parts.most_common():
        print(f"| {part} | {100 * time / total:.1f}% |")
    print("\n| op type | share of op time |\n|---|---|")
    for kind, time in kinds.most_common(top):
        print(f"| {kind} | {100 * time / total:.1f}% |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="A recipe file, e.g. configs/cpu_cifar10.flags.")
    parser.add_argument("--override", action="append", default=[], help="A flag after the file's, e.g. --epochs=1.")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--top", type=int, default=15, help="How many op types to list.")
    parser.add_argument("--trace_dir", default=os.path.join(tempfile.gettempdir(), "step_profile"))
    args = parser.parse_args()
    profile(args.config, args.override, args.steps, args.warmup, args.trace_dir, args.top)
