"""The linear protocol: freeze a pretrained encoder and train an L2-regularised
multinomial logistic regression on its features.

python -m experiments.linear_eval --encoder_path=runs/simclr --dataset=sample
python -m experiments.linear_eval --encoder_path=runs/cifar/export --dataset=cifar10 --label_fraction=0.01

Writes results.json (top-1, top-5, per-class precision/recall/F1, confusion matrix),
confusion_matrix.png, embedding.png and training_curves.png into --output_dir.
"""

from __future__ import annotations

from absl import flags

from contrastive_tf.evaluation import linear_probe
from contrastive_tf.reports import report_classification
from experiments import cli, eval_common


def define_flags(flag_values: flags.FlagValues) -> None:
    eval_common.define_data_flags(flag_values)
    flags.DEFINE_string(
        "output_dir", "runs/linear_eval", "Where results.json and the figures go.", flag_values=flag_values
    )
    flags.DEFINE_integer("epochs", 40, "Epochs of the logistic regression.", flag_values=flag_values)
    flags.DEFINE_float("l2", 1e-4, "L2 penalty on the weights.", flag_values=flag_values)
    eval_common.define_encoder_flags(flag_values)


FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    pretrained, data, (train_features, train_labels), (test_features, test_labels) = eval_common.load_features()
    probe = linear_probe(
        train_features, train_labels, test_features, test_labels, data.num_classes, FLAGS.epochs, FLAGS.l2, FLAGS.seed
    )
    inputs = {"evaluation": "linear", **eval_common.describe(pretrained, data), "epochs": FLAGS.epochs, "l2": FLAGS.l2}
    results = report_classification(
        FLAGS.output_dir, inputs, test_labels, probe.test_scores, test_features, data.class_names, probe.history
    )
    eval_common.print_summary(results, FLAGS.output_dir)


if __name__ == "__main__":
    cli.run(main, define_flags)
