"""``python -m apinet COMMAND``: train, train-interaction, evaluate, explain, evaluate-explanations, import-official, import-classifier, atlas.

The command table below names every command's module; each module holds only argument parsing and
the call into the library (``register(subparsers)`` adds its parser with ``set_defaults(func=...)``).
The library modules expose functions and dataclasses; problems a user can fix are raised as
:class:`apinet.errors.UserError` (or ``ValueError`` / ``FileNotFoundError``) and printed here, as one
line, in one place.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UserError
from . import atlas, evaluate, explain, importers, interaction, metrics, train

__all__ = ["COMMANDS", "UserError", "build_parser", "main"]

#: Command modules in the order ``--help`` lists them.
COMMANDS = (train, interaction, evaluate, explain, metrics, importers, atlas)


def build_parser() -> argparse.ArgumentParser:
    # The `apinet` console script (pip install .) and `python -m apinet` run the same main().
    prog = "apinet" if os.path.basename(sys.argv[0]) == "apinet" else "python -m apinet"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="API-Net Explorer: train, evaluate, explain and import API-Net and a baseline.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, ValueError) as exc:
        # Errors of input (missing dataset files, unreadable images, bad checkpoints) are one line;
        # APINET_DEBUG=1 shows the traceback.
        if os.environ.get("APINET_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
