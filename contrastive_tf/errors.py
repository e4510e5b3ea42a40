"""The one exception type that means "the caller asked for something we cannot do"."""


class UsageError(ValueError):
    """Bad input from the user: an unknown name, a missing path, an impossible setting.

    The message is one line that names the problem and the fix. Entry points print it
    without a traceback and exit with status 2.
    """
