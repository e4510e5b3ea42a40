"""What every entry point shares: flags made from a config's fields, absl start-up, usage
errors as one line + exit 2, a full disk or a lost worker as one line + exit 1, and a run
stopped by SIGTERM or SIGINT, its checkpoint saved, as one line + exit 3.

An entry point has `define_flags(flag_values)`, which declares its flags, and
`main(argv)`, which reads them from `flags.FLAGS`; `run(main, define_flags)` starts it.
Declaring flags in a function, not at import, lets the docs' CLI reference and the tests
read every entry point's flags in one process.
"""

from __future__ import annotations

import dataclasses
import errno
import logging as std_logging
import pathlib
import sys
import types
import typing
from collections.abc import Callable
from typing import NoReturn

import tensorflow as tf
from absl import app, flags, logging

from contrastive_tf.config import PretrainConfig
from contrastive_tf.errors import Preempted, UsageError

USAGE_ERROR = 2
ENVIRONMENT_ERROR = 1
# Stopped on SIGTERM/SIGINT with a checkpoint: rerunning resumes (a scheduler may requeue on it).
PREEMPTED = 3


def fail(message: str) -> NoReturn:
    """Prints `message` as one line on stderr and exits with the usage-error status."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(f"{error} (see --helpfull)")


# A full disk, a full quota, or a file-size limit: the write failed for lack of room.
_NO_ROOM = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded", errno.EFBIG: "File too large"}


def _no_room_reason(error: Exception) -> str | None:
    """Why a write failed for lack of room, or None. TensorFlow's file system errors carry
    no errno, only the message."""
    if getattr(error, "errno", None) in _NO_ROOM:
        return _NO_ROOM[error.errno]
    return next((reason for reason in _NO_ROOM.values() if reason in str(error)), None)


def _environment_failure(error: Exception) -> str | None:
    """The one-line message for a failure of the machine rather than of the command."""
    if isinstance(error, tf.errors.UnavailableError):
        # TensorFlow aborts every collective once a worker stops; the process cannot go on.
        reason = " ".join(line.strip() for line in str(error).splitlines()[:2])
        return f"lost contact with another worker ({reason}); restart every worker with the same command"
    reason = _no_room_reason(error)
    if reason is None:
        return None
    # Checkpoints, exports and .keras files are staged and renamed: nothing half-written is left.
    return f"no room to write ({reason}); free some disk space and rerun the same command"


# bool | None settings: None means "let the library decide".
_TRI_STATE = {"auto": None, "true": True, "false": False}


def _flag_kind(annotation) -> type:
    """The type a config field's flag parses: int, float, str or bool (Optional stripped)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return annotation


def define_config_flags(
    config_class: type, flag_values: flags.FlagValues, names: tuple[str, ...] | None = None
) -> None:
    """One flag per field of the dataclass `config_class` (or per field in `names`), with the
    field's default, help text and choices (see `contrastive_tf.config.setting`)."""
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if names is not None and field.name not in names:
            continue
        name, default, kind = field.name, field.default, _flag_kind(hints[field.name])
        help_text, choices = field.metadata["help"], field.metadata["choices"]
        optional = type(None) in typing.get_args(hints[name])
        if kind is bool and optional:
            default = next(key for key, value in _TRI_STATE.items() if value is default)
            flags.DEFINE_enum(name, default, tuple(_TRI_STATE), help_text, flag_values=flag_values)
        elif kind is bool:
            flags.DEFINE_boolean(name, default, help_text, flag_values=flag_values)
        elif choices:
            flags.DEFINE_enum(name, default, choices, help_text, flag_values=flag_values)
        elif kind is int:
            flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
        elif kind is float:
            flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values=flag_values)


def config_from_flags(config_class: type, flag_values: flags.FlagValues = flags.FLAGS):
    """The `config_class` instance the parsed flags of `define_config_flags` describe."""
    values = {field.name: flag_values[field.name].value for field in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    for name, value in values.items():
        if _flag_kind(hints[name]) is bool and isinstance(value, str):
            values[name] = _TRI_STATE[value]
    return config_class(**values)


def config_from_argv(config_class: type, argv: list[str]):
    """The `config_class` instance that command-line arguments such as
    ["--flagfile=configs/cpu_mnist.flags", "--epochs=2"] describe, parsed on their own flags
    (not flags.FLAGS), so that one process can read several recipes."""
    flag_values = flags.FlagValues()
    define_config_flags(config_class, flag_values)
    flag_values(["config", *argv])
    return config_from_flags(config_class, flag_values)


def define_recipe_flags(flag_values: flags.FlagValues, replaces: str) -> None:
    """Declares `--configs`, recipe files (absl flagfiles of `experiments.pretrain`), and
    `--override`, pretrain flags appended to each; set, the files replace `replaces`."""
    flags.DEFINE_list(
        "configs",
        [],
        f"Pretraining recipe files (absl flagfiles such as configs/cpu_mnist.flags); set, they replace {replaces}.",
        flag_values=flag_values,
    )
    flags.DEFINE_multi_string(
        "override",
        [],
        "A pretrain flag appended to every recipe file's command line (repeat for more), as after "
        "--flagfile=FILE: e.g. --override=--epochs=1 --override=--width=0.25 runs the files at a short schedule.",
        flag_values=flag_values,
    )


def recipe_configs(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, PretrainConfig]:
    """Each `--configs` file's `PretrainConfig`, named for the file: what
    `python -m experiments.pretrain --flagfile=FILE` with the `--override` flags runs. A
    missing or malformed file, or `--override` without files, is one usage error."""
    if flag_values.override and not flag_values.configs:
        fail("--override applies to recipe files; pass them with --configs")
    configs = {}
    for path in flag_values.configs:
        if not pathlib.Path(path).is_file():
            fail(f"recipe file {path} does not exist; pass a flagfile such as configs/cpu_mnist.flags")
        try:
            configs[pathlib.Path(path).stem] = config_from_argv(
                PretrainConfig, [f"--flagfile={path}", *flag_values.override]
            )
        except flags.Error as error:
            fail(f"{path}: {error}")
    return configs


# The `define_flags` functions already applied to flags.FLAGS in this process.
_DEFINED: set[Callable] = set()


def run(main: Callable[[list[str]], None], define_flags: Callable[[flags.FlagValues], None]) -> None:
    """Declares the entry point's flags and runs `main` under absl; a UsageError from the
    library becomes a one-line exit 2."""
    if define_flags not in _DEFINED:
        define_flags(flags.FLAGS)
        _DEFINED.add(define_flags)

    def guarded(argv: list[str]) -> None:
        # SavedModel writing logs every asset at INFO level; keep the console for progress.
        logging.set_verbosity(logging.WARNING)
        # The library's own INFO lines (what a data folder was read as) stay visible.
        std_logging.getLogger("contrastive_tf").setLevel(std_logging.INFO)
        if len(argv) > 1:
            fail(f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag")
        try:
            main(argv)
        except UsageError as error:
            fail(str(error))
        except Preempted as stopped:
            print(stopped, file=sys.stderr)
            sys.exit(PREEMPTED)
        except (OSError, tf.errors.OpError) as error:
            message = _environment_failure(error)
            if message is None:
                raise
            print(f"error: {message}: it resumes from the last checkpoint", file=sys.stderr)
            sys.exit(ENVIRONMENT_ERROR)

    app.run(guarded, flags_parser=_parse_flags)
