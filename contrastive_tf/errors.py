"""The exceptions a caller can act on: bad input, and a run stopped on request."""


class UsageError(ValueError):
    """Bad input from the user: an unknown name, a missing path, an impossible setting.

    The message is one line that names the problem and the fix. Entry points print it
    without a traceback and exit with status 2.
    """


class Preempted(Exception):
    """Training stopped on SIGTERM or SIGINT (a preempted machine, Ctrl-C) after saving a
    checkpoint. The message is one line saying where it stopped and how to resume; entry
    points print it and exit with status 3."""


def reason(error: BaseException) -> str:
    """The first line of what `error` says, or its type's name when it says nothing: for
    one-line messages that quote the cause."""
    message = getattr(error, "message", None) or str(error)
    return message.splitlines()[0] if message.strip() else type(error).__name__
