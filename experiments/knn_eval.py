"""Weighted kNN on a frozen encoder's L2-normalised features (k=200, temperature 0.1:
the protocol of the PyTorch self-supervised benchmarks). No training, so it is quick.

python -m experiments.knn_eval --encoder_path=runs/simclr --dataset=sample
python -m experiments.knn_eval --encoder_path=runs/cifar/export --dataset=cifar10

Writes results.json, confusion_matrix.png and embedding.png into --output_dir.
"""

from __future__ import annotations

from absl import flags

from contrastive_tf.knn import knn_scores
from contrastive_tf.reports import report_classification
from experiments import cli, eval_common

flags.DEFINE_string("output_dir", "runs/knn_eval", "Where results.json and the figures go.")
flags.DEFINE_integer("k", 200, "Neighbours that vote.")
flags.DEFINE_float("temperature", 0.1, "A neighbour with cosine similarity s votes with weight exp(s / temperature).")
eval_common.define_encoder_flags()
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    pretrained, data, (train_features, train_labels), (test_features, test_labels) = eval_common.load_features()
    scores = knn_scores(train_features, train_labels, test_features, data.num_classes, FLAGS.k, FLAGS.temperature)
    inputs = {"evaluation": "knn", **eval_common.describe(pretrained, data), "k": FLAGS.k}
    inputs["temperature"] = FLAGS.temperature
    results = report_classification(FLAGS.output_dir, inputs, test_labels, scores, test_features, data.class_names)
    eval_common.print_summary(results, FLAGS.output_dir)


if __name__ == "__main__":
    cli.run(main)
