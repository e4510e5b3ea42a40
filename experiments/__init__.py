"""The commands, `python -m experiments.NAME` (docs/cli.md lists them and their flags).

Imported before TensorFlow, this package starts TensorFlow without its start-up log
(see `console`), so a command's first line is its own.
"""

from . import console

console.quiet_tensorflow()
