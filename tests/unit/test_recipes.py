"""The published recipes in configs/: each names its source and what it reported, parses
into a valid config (or, for the later steps of a pipeline, into its entry point's flags)
with the command line overriding it, and builds its method."""

import pathlib

import pytest

from builders import config_from_argv
from conftest import ROOT
from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.encoders import build_encoder
from contrastive_tf.methods import METHODS, contrastive_model
from experiments import cli_reference

RECIPES = sorted((ROOT / "configs").glob("*.flags"))
# A pipeline's later steps (SimCLRv2: pretrain -> fine-tune -> distil) are recipes named for
# their entry point, `<pipeline>_finetune.flags` and `<pipeline>_distill.flags`.
LATER_STEPS = ("finetune", "distill")


def entry_point(path: pathlib.Path) -> str:
    """The `experiments` module a recipe is for."""
    step = path.stem.rsplit("_", 1)[-1]
    return step if step in LATER_STEPS else "pretrain"


PRETRAIN_RECIPES = [path for path in RECIPES if entry_point(path) == "pretrain"]
STEP_RECIPES = [path for path in RECIPES if entry_point(path) != "pretrain"]
SIMCLRV2_PIPELINES = ("simclrv2_imagenet", "simclrv2_cifar10")


def step_flags(path: pathlib.Path, *overrides: str):
    """The flags `python -m experiments.<entry point> --flagfile=PATH OVERRIDES` would run with."""
    step = entry_point(path)
    flag_values = cli_reference.entry_point_flags(step)
    flag_values([step, f"--flagfile={path}", *overrides])
    return flag_values


def test_there_is_a_recipe_per_method_and_for_imagenet():
    names = {path.stem for path in RECIPES}
    assert {f"{method}_cifar10" for method in METHODS} <= names
    assert "simclr_imagenet" in names


def test_there_is_a_simclrv2_pipeline_at_imagenet_and_at_cifar_size():
    names = {path.stem for path in RECIPES}
    for pipeline in SIMCLRV2_PIPELINES:
        assert {f"{pipeline}_pretrain", f"{pipeline}_finetune", f"{pipeline}_distill"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_a_recipe_opens_by_naming_its_source_and_what_it_reported(path: pathlib.Path):
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = " ".join(header)
    assert "github" in text.lower() or "/" in text, "name the repository and file"
    assert "Reported" in text or "reports" in text, "state the accuracy the source reported"


@pytest.mark.parametrize("path", PRETRAIN_RECIPES, ids=lambda path: path.stem)
def test_a_recipe_is_a_valid_config_and_the_command_line_overrides_it(path: pathlib.Path):
    config = config_from_argv(f"--flagfile={path}")
    config.validate()
    assert config.model_dir == f"runs/{path.stem}"
    assert config_from_argv(f"--flagfile={path}", "--epochs=1", "--batch_size=64").epochs == 1


@pytest.mark.parametrize("path", STEP_RECIPES, ids=lambda path: path.stem)
def test_a_later_step_sets_only_its_entry_points_flags_and_the_command_line_overrides_it(path: pathlib.Path):
    # An unknown flag in the file would fail here, as it fails the command.
    flag_values = step_flags(path)
    assert flag_values.output_dir == f"runs/{path.stem}"
    assert step_flags(path, "--epochs=1", "--batch_size=64").epochs == 1


@pytest.mark.parametrize("pipeline", SIMCLRV2_PIPELINES)
def test_each_step_of_a_pipeline_reads_what_the_step_before_wrote(pipeline):
    configs = ROOT / "configs"
    pretrain = config_from_argv(f"--flagfile={configs / f'{pipeline}_pretrain.flags'}")
    finetune = step_flags(configs / f"{pipeline}_finetune.flags")
    distill = step_flags(configs / f"{pipeline}_distill.flags")
    assert finetune.encoder_path == pretrain.model_dir and distill.teacher_path == finetune.output_dir
    assert pretrain.dataset == finetune.dataset == distill.dataset


def test_simclrv2_cifar10_distils_its_teacher_into_a_smaller_student():
    configs = ROOT / "configs"
    pretrain = config_from_argv(f"--flagfile={configs / 'simclrv2_cifar10_pretrain.flags'}")
    distill = step_flags(configs / "simclrv2_cifar10_distill.flags")
    teacher = build_encoder(pretrain.encoder, (32, 32, 3), pretrain.width, pretrain.sk_ratio)
    student = build_encoder(distill.student_encoder, (32, 32, 3), distill.student_width)
    assert student.count_params() < teacher.count_params()


def test_simclrv2_imagenet_is_table_1s_biggest_encoder_fine_tuned_from_the_first_head_layer():
    configs = ROOT / "configs"
    pretrain = config_from_argv(f"--flagfile={configs / 'simclrv2_imagenet_pretrain.flags'}")
    expected = dict(
        method="simclr", image_size=224, encoder="resnet152", width=3.0, sk_ratio=0.0625, batch_size=4096,
        epochs=800, projection_layers=3,
    )  # fmt: skip
    assert {name: getattr(pretrain, name) for name in expected} == expected
    # google-research/simclr README.md: --ft_proj_selector=1 on 1% of the labels, batch 1024, 60 epochs.
    finetune = step_flags(configs / "simclrv2_imagenet_finetune.flags")
    assert (finetune.head_layers, finetune.label_fraction, finetune.batch_size, finetune.epochs) == (1, 0.01, 1024, 60)


def test_simclr_cifar10_is_the_readme_command_of_google_research_simclr():
    config = config_from_argv(f"--flagfile={ROOT / 'configs' / 'simclr_cifar10.flags'}")
    expected = dict(
        dataset="cifar10", encoder="resnet18", batch_size=512, epochs=1000, optimizer="lars", learning_rate=1.0,
        lr_scaling="linear", weight_decay=1e-4, temperature=0.5, color_jitter_strength=0.5, blur=False,
    )  # fmt: skip
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize("name", ["barlow_twins_cifar10", "vicreg_cifar10", "nnclr_cifar10"])
def test_solo_learns_cifar_recipes_run_its_lars(name):
    # scripts/pretrain/cifar/{barlow,vicreg,nnclr}.yaml: eta 0.02, clip_lr, exclude_bias_n_norm.
    config = config_from_argv(f"--flagfile={ROOT / 'configs' / f'{name}.flags'}")
    assert config.lars_settings() == {"trust_coefficient": 0.02, "clip_lr": True, "variant": "solo_learn"}


# Whose ResNet and heads a recipe's source trains, so whose initial weights (initializers.py):
# google-research/simclr's tf2/resnet.py and model.py, lightly's ResNetGenerator and heads
# (torch's defaults), solo-learn's torchvision ResNet-18 and torch heads.
SOURCE_INITIALIZERS = {
    "simclr": ["simclr_cifar10", "simclr_imagenet", "simclrv2_cifar10_pretrain", "simclrv2_imagenet_pretrain"],
    "pytorch": ["byol_cifar10", "moco_cifar10", "simsiam_cifar10"],
    "torchvision": ["barlow_twins_cifar10", "mocov3_cifar10", "nnclr_cifar10", "supcon_cifar10", "vicreg_cifar10"],
}


@pytest.mark.parametrize("initializer, names", SOURCE_INITIALIZERS.items())
def test_a_resnet_recipe_draws_its_initial_weights_as_its_source(initializer, names):
    for name in names:
        assert config_from_argv(f"--flagfile={ROOT / 'configs' / f'{name}.flags'}").initializer == initializer


@pytest.mark.parametrize("path", [p for p in PRETRAIN_RECIPES if "cifar10" in p.stem], ids=lambda path: path.stem)
def test_a_cifar_recipe_builds_its_method(path: pathlib.Path):
    config = config_from_argv(f"--flagfile={path}")
    encoder = build_encoder(config.encoder, (32, 32, 3), config.width, config.sk_ratio)
    augmenter = SimCLRAugment(blur=config.blur, crop_scale=(config.crop_scale_min, 1.0), seed=0)
    model = contrastive_model(config.method, encoder, augmenter, num_classes=10, **config.method_settings())
    assert config.projection_dim in (None, model.projection_head.output_dim)  # None: the method's own


def test_vicreg_cifar10_weights_the_variance_term_as_solo_learn_does():
    # solo/losses/vicreg.py sums the two views' variance hinges at weight 25; losses.vicreg_loss
    # averages them (facebookresearch/vicreg), so the same loss takes weight 50 here.
    config = config_from_argv(f"--flagfile={ROOT / 'configs' / 'vicreg_cifar10.flags'}")
    settings = config.method_settings()
    weights = (settings["invariance_weight"], settings["variance_weight"], settings["covariance_weight"])
    assert weights == (25.0, 50.0, 1.0)
