"""Settings are declared once, in `PretrainConfig`: the flags, their parsing and the
checks follow from the declarations."""

import dataclasses

import pytest
from absl import flags

from builders import config_from_argv
from contrastive_tf.config import GROUPS, PretrainConfig
from contrastive_tf.errors import UsageError
from contrastive_tf.methods import METHODS
from experiments import cli, cli_reference


def test_every_field_has_help_and_a_group():
    for field in dataclasses.fields(PretrainConfig):
        assert field.metadata["help"].endswith("."), field.name
        assert field.metadata["group"] in GROUPS, field.name


def test_no_flags_give_the_default_config():
    assert config_from_argv() == PretrainConfig()


def test_flags_set_their_fields_with_the_fields_types():
    argv = ["--method=moco", "--batch_size=64", "--temperature=0.3", "--blur=false", "--jit_compile=true"]
    config = config_from_argv(*argv)
    assert config == PretrainConfig(method="moco", batch_size=64, temperature=0.3, blur=False, jit_compile=True)
    assert config_from_argv("--blur=auto").blur is None and config_from_argv("--overwrite").overwrite is True


def test_a_flag_outside_the_choices_is_refused_by_the_parser():
    with pytest.raises(flags.IllegalFlagValueError, match="value should be one of"):
        config_from_argv("--method=swav")


def test_the_method_choices_are_the_registry():
    flag_values = flags.FlagValues()
    cli.define_config_flags(PretrainConfig, flag_values)
    assert flag_values["method"].parser.enum_values == list(METHODS)


def test_method_settings_pass_only_what_is_set_and_the_method_has():
    assert PretrainConfig(method="byol").method_settings() == {}
    config = PretrainConfig(method="moco", temperature=0.3, queue_size=512, projection_dim=64)
    assert config.method_settings() == {"temperature": 0.3, "queue_size": 512, "projection_dim": 64}


def test_lars_settings_reach_lars_under_its_names_and_no_other_optimizer():
    config = PretrainConfig(optimizer="lars", lars_trust_coefficient=0.02, lars_clip_lr=True, lars_variant="solo_learn")
    assert config.lars_settings() == {"trust_coefficient": 0.02, "clip_lr": True, "variant": "solo_learn"}
    assert PretrainConfig(optimizer="sgd").lars_settings() == {}


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(width=0), "width must be > 0, got 0"),
        (dict(crop_scale_min=0), "crop_scale_min must be in (0, 1], got 0"),
        (dict(rotation_degrees=-5), "rotation_degrees must be in [0, 180], got -5"),
        (dict(shear_degrees=70), "shear_degrees must be in [0, 60], got 70"),
        (dict(pooling_grid=0), "pooling_grid must be >= 1, got 0"),
        (dict(verbose=3), "verbose must be 0, 1 or 2, got 3"),
        (dict(final_eval_train_examples=0), "final_eval_train_examples must be >= 1, got 0"),
        (dict(method="simsiam", target_momentum=0.9), "simsiam does not use target_momentum"),
        (dict(method="moco", batch_size=6), "moco needs batch_size >= 8"),
        (dict(optimizer="sgd", lars_clip_lr=True), "sgd does not use lars_clip_lr; leave it unset"),
        (dict(optimizer="sgd", optimizer_momentum=1.0), "optimizer_momentum must be in [0, 1), got 1.0"),
        (dict(optimizer="adam", optimizer_momentum=0.0), "adam does not use optimizer_momentum; leave it unset"),
        (dict(optimizer="lars", lars_trust_coefficient=0), "lars_trust_coefficient must be > 0, got 0"),
    ],
)
def test_validate_names_the_setting_and_what_it_allows(settings, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        PretrainConfig(**settings).validate()


def test_the_cli_reference_lists_every_setting_of_every_group():
    text = cli_reference.render()
    for field in dataclasses.fields(PretrainConfig):
        assert f"| `--{field.name}` |" in text
    for group in GROUPS:
        assert f"### {group.capitalize()}" in text


def _recipe_flags(*argv: str) -> flags.FlagValues:
    """The parsed `--configs`/`--override` flags of an entry point that runs recipe files."""
    flag_values = flags.FlagValues()
    cli.define_recipe_flags(flag_values, replaces="its other rows")
    flag_values(["entry_point", *argv])
    return flag_values


def test_recipe_files_are_read_with_the_overrides_after_them(tmp_path):
    recipe = tmp_path / "tiny_mnist.flags"
    recipe.write_text("--dataset=sample\n--epochs=6\n--width=0.5\n")
    configs = cli.recipe_configs(_recipe_flags(f"--configs={recipe}", "--override=--epochs=1"))
    assert list(configs) == ["tiny_mnist"]
    assert (configs["tiny_mnist"].epochs, configs["tiny_mnist"].width) == (1, 0.5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--configs=missing.flags"], "error: recipe file missing.flags does not exist; pass a flagfile"),
        (["--override=--epochs=1"], "error: --override applies to recipe files; pass them with --configs"),
        (["--configs={bad}"], "bad.flags: "),
    ],
)
def test_a_bad_recipe_is_one_error_line(tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.flags"
    bad.write_text("--no_such_flag=1\n")
    with pytest.raises(SystemExit) as stopped:
        cli.recipe_configs(_recipe_flags(*(arg.format(bad=bad) for arg in argv)))
    assert stopped.value.code == cli.USAGE_ERROR
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
