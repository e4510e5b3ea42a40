"""`python -m experiments NAME --flag=...` runs `python -m experiments.NAME --flag=...`.
Installed from a wheel, it is the `contrastive-tf` command: `contrastive-tf pretrain`.
"""

from __future__ import annotations

import runpy
import sys

from .cli import USAGE_ERROR
from .cli_reference import ENTRY_POINTS


def main() -> None:
    name, *flags = sys.argv[1:] or ["--help"]
    if name not in ENTRY_POINTS:
        print(
            f"usage: contrastive-tf COMMAND [--flag=value ...], COMMAND one of {', '.join(ENTRY_POINTS)}; "
            "contrastive-tf COMMAND --helpfull lists its flags",
            file=sys.stderr,
        )
        sys.exit(0 if name in ("-h", "--help") else USAGE_ERROR)
    sys.argv = [sys.argv[0], *flags]
    # As `python -m` does: the command runs as __main__, so absl's help shows its docstring.
    runpy.run_module(f"{__package__}.{name}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
