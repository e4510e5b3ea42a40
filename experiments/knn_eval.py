"""Weighted kNN on a frozen encoder's L2-normalised features (by default k=200, temperature 0.1:
the protocol of the PyTorch self-supervised benchmarks). No training, so it is quick.

python -m experiments.knn_eval --encoder_path=runs/simclr --dataset=sample
python -m experiments.knn_eval --encoder_path=runs/cifar/export --dataset=cifar10

Writes results.json, confusion_matrix.png and embedding.png into --output_dir.
"""

from __future__ import annotations

from absl import flags

from contrastive_tf.knn import KNN_K, KNN_TEMPERATURE, knn_scores
from contrastive_tf.reports import report_classification

from . import cli, eval_common


def define_flags(flag_values: flags.FlagValues) -> None:
    eval_common.define_data_flags(flag_values)
    flags.DEFINE_string(
        "output_dir", "runs/knn_eval", "Where results.json and the figures go.", flag_values=flag_values
    )
    flags.DEFINE_integer("k", KNN_K, "Neighbours that vote.", flag_values=flag_values)
    flags.DEFINE_float(
        "temperature",
        KNN_TEMPERATURE,
        "A neighbour with cosine similarity s votes with weight exp(s / temperature).",
        flag_values=flag_values,
    )
    eval_common.define_encoder_flags(flag_values)


FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    pretrained, data, (train_features, train_labels), (test_features, test_labels) = eval_common.load_features()
    scores = knn_scores(train_features, train_labels, test_features, data.num_classes, FLAGS.k, FLAGS.temperature)
    inputs = {"evaluation": "knn", **eval_common.describe(pretrained, data), "k": FLAGS.k}
    inputs["temperature"] = FLAGS.temperature
    results = report_classification(FLAGS.output_dir, inputs, test_labels, scores, test_features, data.class_names)
    eval_common.print_summary(results, FLAGS.output_dir)


if __name__ == "__main__":
    cli.run(main, define_flags)
