"""What every entry point shares: absl start-up, usage errors as one line + exit 2, and a
full disk or a lost worker as one line + exit 1."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import NoReturn

import tensorflow as tf
from absl import app, flags, logging

from contrastive_tf.errors import UsageError

USAGE_ERROR = 2
ENVIRONMENT_ERROR = 1


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
        except (OSError, tf.errors.OpError) as error:
            message = _environment_failure(error)
            if message is None:
                raise
            print(f"error: {message}: it resumes from the last checkpoint", file=sys.stderr)
            sys.exit(ENVIRONMENT_ERROR)

    app.run(guarded, flags_parser=_parse_flags)
