"""The ``gperc`` command line: one subcommand per module of this package.

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func=handler`` where ``handler(args) -> int`` returns the exit code.

A gperc error ends the command with one ``gperc: error: ...`` line and exit code 2; ``--traceback``
(env ``GPERC_TRACEBACK=1``) prints the traceback above it, including the original error raised in
a plugin's code. In strict mode (``--strict-plugins``, env ``GPERC_STRICT_PLUGINS=1``) every command
first loads and collects every plugin and stops with exit code 2 when one is broken (``gperc
plugins`` lists them and exits 1).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from typing import Any, Sequence

ENV_TRACEBACK = "GPERC_TRACEBACK"

COMMAND_MODULES = ("plugins", "tasks", "train", "eval", "predict", "convert", "export", "cache")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``gperc`` argument parser with every available subcommand."""
    from gperc_core._version import __version__

    parser = argparse.ArgumentParser(prog="gperc", description="gperc: Perceiver tasks from plugins.")
    parser.add_argument("--version", action="version", version=f"gperc-core {__version__}")
    parser.add_argument("--plugins", dest="plugin_allow", default=None,
                        help="comma-separated allow-list of plugins to load (env GPERC_PLUGINS)")
    parser.add_argument("--disable-plugins", dest="plugin_block", default=None,
                        help="comma-separated plugins not to load (env GPERC_DISABLE_PLUGINS)")
    parser.add_argument("--strict-plugins", dest="plugin_strict", action="store_true", default=False,
                        help="fail (exit non-zero) when any plugin is broken (env GPERC_STRICT_PLUGINS=1)")
    parser.add_argument("--traceback", action="store_true", default=False,
                        help="print the traceback of an error, e.g. one raised in a plugin (env GPERC_TRACEBACK=1)")
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
        with warnings.catch_warnings():
            warnings.showwarning = _show_plugin_warning(warnings.showwarning)
            if args.command != "plugins":
                check_strict(args)
            return int(args.func(args) or 0)
    except GpercError as exc:
        if args.traceback or os.environ.get(ENV_TRACEBACK, "").strip().lower() in ("1", "true", "yes", "on"):
            traceback.print_exception(exc, file=sys.stderr)
        print(f"gperc: error: {exc}", file=sys.stderr)
        return 2


def _show_plugin_warning(show: Any) -> Any:
    """Return a ``warnings.showwarning`` that prints a `PluginWarning` as one ``gperc: warning:`` line
    (no source line) and hands every other warning to ``show``."""
    from gperc_core.plugins.manager import PluginWarning

    def showwarning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                    line: str | None = None) -> None:
        if issubclass(category, PluginWarning):
            print(f"gperc: warning: {message}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def check_strict(args: Any) -> None:
    """In strict mode (``--strict-plugins`` or env ``GPERC_STRICT_PLUGINS=1``), load and collect every
    plugin (task cards validated) and raise `PluginError` naming each broken one; else do nothing."""
    from gperc_core.data.registry import check_plugin_cards
    from gperc_core.errors import PluginError
    from gperc_core.plugins.manager import ENV_STRICT, env_strict, plugin_manager_from_args

    if not (args.plugin_strict or env_strict()):
        return
    broken = check_plugin_cards(plugin_manager_from_args(args, strict=False)).broken_plugins()
    if broken:
        details = "; ".join(f"{i.label} failed at {i.stage}: {i.error}" for i in broken)
        raise PluginError(f"{len(broken)} broken plugin(s) (strict mode: --strict-plugins / {ENV_STRICT}=1): "
                          f"{details}; 'gperc plugins' shows them")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
