"""The command-line reference, docs/cli.md, made from each entry point's own flag
declarations (pretrain's from the fields of `PretrainConfig`), so that it cannot drift.

python -m experiments.cli_reference          # rewrites docs/cli.md
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib

from absl import flags

from contrastive_tf.config import GROUPS, PretrainConfig
from contrastive_tf.methods import METHODS, setting_names

ENTRY_POINTS = ("pretrain", "linear_eval", "knn_eval", "finetune", "distill", "search", "quality", "benchmark")
DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "cli.md"
# The config group of each pretraining flag; the flags beyond the config are run settings.
_PRETRAIN_GROUPS = {field.name: field.metadata["group"] for field in dataclasses.fields(PretrainConfig)}


def entry_point_flags(name: str) -> flags.FlagValues:
    """The flags `experiments.<name>` declares, in a FlagValues of their own."""
    flag_values = flags.FlagValues()
    importlib.import_module(f"{__package__}.{name}").define_flags(flag_values)
    return flag_values


def _default(flag: flags.Flag) -> str:
    if flag.default is None:
        return "unset"
    if isinstance(flag.default, bool):
        return f"`{str(flag.default).lower()}`"
    if isinstance(flag.default, list):
        return f"`{','.join(map(str, flag.default))}`"
    return f"`{flag.default}`"


def _table(flag_list: list[flags.Flag]) -> list[str]:
    rows = ["| flag | default | what it sets |", "| --- | --- | --- |"]
    for flag in flag_list:
        help_text = " ".join(flag.help.split())  # a repeatable flag's help has absl's line break in it
        choices = getattr(flag.parser, "enum_values", None)
        if choices:
            # absl puts the choices in front of an enum's help; here they go at its end.
            help_text = help_text.removeprefix(f"<{'|'.join(choices)}>: ")
            help_text += f" One of: {', '.join(f'`{choice}`' for choice in choices)}."
        help_text = help_text.replace("|", "\\|")
        rows.append(f"| `--{flag.name}` | {_default(flag)} | {help_text} |")
    return rows


def _section(name: str) -> list[str]:
    module = importlib.import_module(f"{__package__}.{name}")
    summary = (module.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    flag_values = entry_point_flags(name)
    flag_list = [flag_values[flag_name] for flag_name in flag_values]
    lines = [f"## `python -m experiments.{name}`", "", summary, ""]
    if name != "pretrain":
        return [*lines, *_table(flag_list), ""]
    for group in GROUPS:
        members = [flag for flag in flag_list if _PRETRAIN_GROUPS.get(flag.name, "run") == group]
        lines += [f"### {group.capitalize()}", "", *_table(members), ""]
        if group == "method":
            lines += _method_defaults()
    return lines


def _method_defaults() -> list[str]:
    """Each method's own settings and their defaults, from the methods themselves: what a
    setting left unset becomes."""
    names = sorted(setting_names())
    lines = ["Each method's defaults for the settings left unset (- : the method has no such setting):", ""]
    lines += ["| setting | " + " | ".join(f"`{method}`" for method in METHODS) + " |"]
    lines += ["| --- |" + " --- |" * len(METHODS)]
    for name in names:
        cells = [
            model_class.Settings.default_text(name) if name in model_class.settings() else "-"
            for model_class in METHODS.values()
        ]
        lines.append(f"| `--{name}` | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render() -> str:
    """docs/cli.md as the code declares it now."""
    lines = [
        "# Command-line reference",
        "",
        "Made from the code by `python -m experiments.cli_reference`; edit the flag declarations, not this page.",
        "Every command also takes `--flagfile=FILE` (one flag a line; flags after it override it) and `--helpfull`.",
        "A setting left unset takes the default the library chooses (for the method's own settings, the method's).",
        "",
    ]
    for name in ENTRY_POINTS:
        lines += _section(name)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC}")
