"""The published recipes in configs/: each names its source and what it reported, parses
into a valid config with the command line overriding it, and builds its method."""

import pathlib

import pytest

from builders import config_from_argv
from conftest import ROOT
from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.encoders import build_encoder
from contrastive_tf.methods import contrastive_model

RECIPES = sorted((ROOT / "configs").glob("*.flags"))




def test_there_is_a_recipe_per_method_and_for_imagenet():
    names = {path.stem for path in RECIPES}
    assert {"simclr_cifar10", "moco_cifar10", "byol_cifar10", "simsiam_cifar10", "supcon_cifar10"} <= names
    assert "simclr_imagenet" in names


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


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_a_recipe_is_a_valid_config_and_the_command_line_overrides_it(path: pathlib.Path):
    config = config_from_argv(f"--flagfile={path}")
    config.validate()
    assert config.model_dir == f"runs/{path.stem}"
    assert config_from_argv(f"--flagfile={path}", "--epochs=1", "--batch_size=64").epochs == 1


def test_simclr_cifar10_is_the_readme_command_of_google_research_simclr():
    config = config_from_argv(f"--flagfile={ROOT / 'configs' / 'simclr_cifar10.flags'}")
    expected = dict(
        dataset="cifar10", encoder="resnet18", batch_size=512, epochs=1000, optimizer="lars", learning_rate=1.0,
        lr_scaling="linear", weight_decay=1e-4, temperature=0.5, color_jitter_strength=0.5, blur=False,
    )  # fmt: skip
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize("path", [p for p in RECIPES if "cifar10" in p.stem], ids=lambda path: path.stem)
def test_a_cifar_recipe_builds_its_method(path: pathlib.Path):
    config = config_from_argv(f"--flagfile={path}")
    encoder = build_encoder(config.encoder, (32, 32, 3), config.width)
    augmenter = SimCLRAugment(blur=config.blur, crop_scale=(config.crop_scale_min, 1.0), seed=0)
    model = contrastive_model(config.method, encoder, augmenter, num_classes=10, **config.method_settings())
    assert model.projection_head.output_dim == config.projection_dim
