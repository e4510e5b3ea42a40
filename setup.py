"""The wheel holds the library, `contrastive_tf`, and the commands in experiments/ as
`contrastive_tf_experiments` (a top-level name of its own, so that they import before
`contrastive_tf` and TensorFlow and start quietly, see experiments/console.py; not
`experiments`, a name other distributions use), run by the `contrastive-tf` command."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["contrastive_tf", "contrastive_tf.*"]), "contrastive_tf_experiments"],
    package_dir={"contrastive_tf_experiments": "experiments"},
    entry_points={"console_scripts": ["contrastive-tf = contrastive_tf_experiments.__main__:main"]},
)
