"""``python -m apinet COMMAND``: train, evaluate, explain, evaluate-explanations, import-official, import-classifier.

Each command lives in its own module, which exposes ``register(subparsers)`` adding its parser
with ``set_defaults(func=...)``; modules are imported only when present, so the CLI starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main"]

# module providing register(subparsers), in the order shown by --help
_COMMAND_MODULES = ("apinet.train", "apinet.evaluate", "apinet.explain", "apinet.metrics", "apinet.importers")


class UserError(Exception):
    """A problem the user can fix (bad path, bad file): printed as one line, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    # The `apinet` console script (pip install .) and `python -m apinet` run the same main().
    prog = "apinet" if os.path.basename(sys.argv[0]) == "apinet" else "python -m apinet"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="API-Net Explorer: train, evaluate, explain and import API-Net and a baseline.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
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
