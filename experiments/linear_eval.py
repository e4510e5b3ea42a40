"""The linear protocols: freeze a pretrained encoder and train a linear classifier on its
features, by the protocol --protocol names (see docs/evaluation.md).

python -m experiments.linear_eval --encoder_path=runs/simclr --dataset=sample
python -m experiments.linear_eval --encoder_path=runs/simclr --protocol=simclr --epochs=20
python -m experiments.linear_eval --encoder_path=runs/cifar/export --dataset=cifar10 --protocol=lbfgs

Writes results.json (the protocol and its settings, top-1, top-5, per-class
precision/recall/F1, confusion matrix), confusion_matrix.png, embedding.png and, for the
protocols that train by epochs, training_curves.png into --output_dir.
"""

from __future__ import annotations

import inspect

from absl import flags

from contrastive_tf.evaluation import (
    LINEAR_PROTOCOLS,
    STANDARDISED,
    extract_features,
    probe_encoder,
    protocol_settings,
)
from contrastive_tf.reports import report_classification

from . import cli, eval_common


def _defaults(setting: str) -> str:
    """Each protocol's default for `setting`, e.g. "standardised 40, simclr 90"."""
    defaults = {name: inspect.signature(probe).parameters.get(setting) for name, probe in LINEAR_PROTOCOLS.items()}
    return ", ".join(f"{name} {parameter.default:g}" for name, parameter in defaults.items() if parameter)


def define_flags(flag_values: flags.FlagValues) -> None:
    eval_common.define_data_flags(flag_values)
    flags.DEFINE_string(
        "output_dir", "runs/linear_eval", "Where results.json and the figures go.", flag_values=flag_values
    )
    flags.DEFINE_enum(
        "protocol",
        STANDARDISED,
        tuple(LINEAR_PROTOCOLS),
        "standardised: standardised features, fixed L2, solved by L-BFGS; simclr: SimCLR's SGD with "
        "Nesterov momentum on the features of new random crop (and, for colour, flip) views every epoch, no "
        "standardisation; lbfgs: L-BFGS logistic regression, its L2 chosen on a validation split carved from the "
        "training split.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "epochs",
        None,
        f"Training epochs; unset: the protocol's ({_defaults('epochs')}). standardised and lbfgs fit to convergence.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "l2",
        None,
        f"L2 penalty l2 * ||W||^2 on the weights; unset: the protocol's ({_defaults('l2')}). lbfgs chooses its own.",
        flag_values=flag_values,
    )
    eval_common.define_encoder_flags(flag_values)


FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    pretrained, data = eval_common.load_inputs()
    settings = {name: FLAGS[name].value for name in ("epochs", "l2") if FLAGS[name].value is not None}
    if "seed" in protocol_settings(FLAGS.protocol):
        settings["seed"] = FLAGS.seed
    probe = probe_encoder(pretrained.encoder, data.train, data.test, data.num_classes, FLAGS.protocol, **settings)
    test_features, test_labels = extract_features(pretrained.encoder, data.test)  # for the embedding figure
    inputs = {
        "evaluation": "linear",
        "protocol": probe.protocol,
        **eval_common.describe(pretrained, data),
        **probe.settings,
    }
    results = report_classification(
        FLAGS.output_dir, inputs, test_labels, probe.test_scores, test_features, data.class_names, probe.history
    )
    eval_common.print_summary(results, FLAGS.output_dir)


if __name__ == "__main__":
    cli.run(main, define_flags)
