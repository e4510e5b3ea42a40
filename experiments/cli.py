"""What every entry point shares: absl start-up, and usage errors as one line + exit 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from absl import app, flags, logging

from contrastive_tf.errors import UsageError

USAGE_ERROR = 2


def fail(message: str) -> NoReturn:
    """Prints `message` as one line on stderr and exits with the usage-error status."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(f"{error} (see --helpfull)")


def run(main: Callable[[list[str]], None]) -> None:
    """Runs `main` under absl; a UsageError from the library becomes a one-line exit 2."""

    def guarded(argv: list[str]) -> None:
        # SavedModel writing logs every asset at INFO level; keep the console for progress.
        logging.set_verbosity(logging.WARNING)
        if len(argv) > 1:
            fail(f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag")
        try:
            main(argv)
        except UsageError as error:
            fail(str(error))

    app.run(guarded, flags_parser=_parse_flags)
