"""Settings declared once: a dataclass field carries a setting's default, its help text, the
values it allows and its group. A run's config (`config.PretrainConfig`) and each method's
settings (`methods.settings.MethodSettings`) are made of them; the command-line flags, the
docs' tables and the validation all read the same field."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable

from contrastive_tf.errors import UsageError

# (test, rule): the test a set value must pass, and the rule an error states ("must be > 0"),
# or a function of the value that gives the whole error (to suggest the closest names, say).
Rule = tuple[Callable[[typing.Any], bool], str | Callable[[typing.Any], str]]


def setting(
    default: object,
    help: str,
    group: str = "method",
    *,
    choices: tuple[str, ...] | None = None,
    valid: Rule | None = None,
    structural: bool = False,
    unset: str = "unset",
) -> typing.Any:
    """A settings field. None (where a field allows it) always passes `valid`; `unset` says
    what a default of None means ("as wide as h"). A method's `structural` setting shapes
    the networks or views its `create` builds, so its model takes them built, not the
    setting."""
    metadata = {
        "help": help,
        "group": group,
        "choices": choices,
        "valid": valid,
        "structural": structural,
        "unset": unset,
    }
    return dataclasses.field(default=default, metadata=metadata)


def positive(name: str = "> 0") -> Rule:
    return (lambda value: value > 0), f"must be {name}"


def at_least(bound: float) -> Rule:
    return (lambda value: value >= bound), f"must be >= {bound}"


def within(low: float, high: float, low_open: bool = False) -> Rule:
    if low_open:
        return (lambda value: low < value <= high), f"must be in ({low}, {high}]"
    return (lambda value: low <= value <= high), f"must be in [{low}, {high}]"


def check_fields(instance: object) -> None:
    """UsageError naming the first field of the dataclass `instance` whose value its
    declaration does not allow."""
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if value is None:
            continue
        choices, valid = field.metadata["choices"], field.metadata["valid"]
        if choices and value not in choices:
            raise UsageError(f"unknown {field.name} {value!r}; choose one of {', '.join(choices)}")
        if valid and not valid[0](value):
            rule = valid[1]
            raise UsageError(rule(value) if callable(rule) else f"{field.name} {rule}, got {value}")
