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
