"""Builds the MNIST sample that ships inside the package (`contrastive_tf/sample/`).

The default `python -m experiments.pretrain` run needs real data on a machine with no
internet, so the package carries a small, stratified slice of MNIST.

    python scripts/make_sample.py --mnist ../shared/data/mnist.npz
"""

import argparse
import pathlib

import numpy as np


def stratified_head(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` examples of every class, in original order."""
    picks = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", default="../shared/data/mnist.npz")
    parser.add_argument("--train_per_class", type=int, default=1000)
    parser.add_argument("--test_per_class", type=int, default=200)
    parser.add_argument(
        "--out",
        default=str(pathlib.Path(__file__).parents[1] / "contrastive_tf/sample/mnist_sample.npz"),
    )
    args = parser.parse_args()
    with np.load(args.mnist, allow_pickle=False) as mnist:
        train = stratified_head(mnist["y_train"], args.train_per_class)
        test = stratified_head(mnist["y_test"], args.test_per_class)
        np.savez_compressed(
            args.out,
            x_train=mnist["x_train"][train],
            y_train=mnist["y_train"][train],
            x_test=mnist["x_test"][test],
            y_test=mnist["y_test"][test],
            class_names=mnist["class_names"],
        )
    print(f"wrote {args.out}: {len(train)} train, {len(test)} test digits")


if __name__ == "__main__":
    main()
