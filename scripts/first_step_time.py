"""Seconds from the start of a pretraining run to the end of its first training step, by stage.

    python scripts/first_step_time.py --dataset=/data/photos --image_size=224 --encoder=resnet18

Any `PretrainConfig` flag applies. The stages are `prepare` (list, probe, and for small sets
decode), building the model, the first batch, and the first step; TensorFlow's import comes
before the clock starts. Run it from another checkout to compare versions.
"""

from __future__ import annotations

import time

import keras

from contrastive_tf.config import PretrainConfig
from contrastive_tf.pretraining import build_model, prepare
from experiments import cli


def main(argv: list[str]) -> None:
    config = cli.config_from_flags(PretrainConfig)
    stages, start = {}, time.perf_counter()
    run = prepare(config)
    stages["prepare"] = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    model = build_model(run)
    stages["build model"] = time.perf_counter()
    batch = next(iter(run.batches_from(0)))
    stages["first batch"] = time.perf_counter()
    model.train_step(batch)
    stages["first step"] = time.perf_counter()
    previous = start
    for name, moment in stages.items():
        print(f"{name:<12} {moment - previous:7.2f} s")
        previous = moment
    print(f"{'total':<12} {previous - start:7.2f} s ({run.data.train.num_examples} training images)")


if __name__ == "__main__":
    cli.run(main, lambda flag_values: cli.define_config_flags(PretrainConfig, flag_values))
