"""The ``gperc`` command line: one subcommand per module of this package.

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func=handler`` where ``handler(args) -> int`` returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

COMMAND_MODULES = ("plugins", "tasks", "train", "eval", "predict", "export")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``gperc`` argument parser with every available subcommand."""
    from gperc_core._version import __version__

    parser = argparse.ArgumentParser(prog="gperc", description="gperc: Perceiver tasks from plugins.")
    parser.add_argument("--version", action="version", version=f"gperc-core {__version__}")
    parser.add_argument("--plugins", dest="plugin_allow", default=None,
                        help="comma-separated allow-list of plugins to load (env GPERC_PLUGINS)")
    parser.add_argument("--disable-plugins", dest="plugin_block", default=None,
                        help="comma-separated plugins not to load (env GPERC_DISABLE_PLUGINS)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"gperc_core.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gperc_core.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gperc`` command line; returns the process exit code."""
    from gperc_core.errors import GpercError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except GpercError as exc:
        print(f"gperc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
