"""``gperc plugins``: list the installed plugins, what they register, and why any failed to load.

``gperc plugins`` prints a table; ``gperc plugins --json`` prints the same as a JSON list of objects
(name, distribution, version, hooks, registered, error, stage, withheld, enabled, module). A plugin
that cannot be loaded is listed with the stage it failed at and its error, and the command exits 0;
in strict mode (``--strict-plugins`` / ``GPERC_STRICT_PLUGINS=1``) it lists everything the same way
and exits 1 when any enabled plugin is broken, so CI can run it as a check.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any, Sequence

_HOOK_PREFIX = "gperc_"
_REGISTER_PREFIX = "register_"


def register(subparsers: Any) -> None:
    """Add the ``plugins`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "plugins", help="list installed plugins, their hooks, what they register and load errors",
        description="List gperc plugins found in entry-point group 'gperc': distribution, version, hooks "
                    "implemented, modalities/datasets/tasks registered and any load error.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the plugin listing; returns 0, or 1 in strict mode when a plugin is broken."""
    from gperc_core.api.catalog import installed_plugins
    from gperc_core.plugins.manager import ENV_STRICT, AllowListWarning, env_strict

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AllowListWarning)
        infos = installed_plugins(allow=getattr(args, "plugin_allow", None), block=getattr(args, "plugin_block", None))
    for warning in caught:
        if issubclass(warning.category, AllowListWarning):
            print(f"gperc: warning: {warning.message}", file=sys.stderr)
    if args.json:
        json.dump(infos, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(infos))
    broken = [i["name"] for i in infos if i["enabled"] and i["error"]]
    if broken and (getattr(args, "plugin_strict", False) or env_strict()):
        print(f"gperc: error: {len(broken)} broken plugin(s): {', '.join(broken)} (strict mode: --strict-plugins / "
              f"{ENV_STRICT}=1)", file=sys.stderr)
        return 1
    return 0


def _status(info: dict[str, Any]) -> str:
    if not info["enabled"]:
        return "disabled"
    return "error" if info["error"] else "ok"


def _short_hooks(hooks: Sequence[str]) -> str:
    names = [h[len(_HOOK_PREFIX):] if h.startswith(_HOOK_PREFIX) else h for h in hooks]
    return ",".join(n[len(_REGISTER_PREFIX):] if n.startswith(_REGISTER_PREFIX) else n for n in names) or "-"


def _short_registered(registered: dict[str, list[str]]) -> str:
    parts = [f"{kind}: {', '.join(names)}" for kind, names in registered.items() if names]
    return "; ".join(parts) or "-"


def format_table(infos: Sequence[dict[str, Any]]) -> str:
    """Return the text table of ``infos`` (dicts of `PluginInfo`), load errors listed below it."""
    if not infos:
        return "No gperc plugins installed (entry-point group 'gperc'). Try: pip install gperc-plugin-image\n"
    header = ("PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS", "REGISTERED")
    rows = [(i["name"], i["distribution"] or "(in-process)", i["version"] or "-", _status(i),
             _short_hooks(i["hooks"]), _short_registered(i["registered"])) for i in infos]
    widths = [max(len(str(r[k])) for r in (header, *rows)) for k in range(len(header) - 1)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1] for r in (header, *rows)]
    errors = [i for i in infos if i["error"]]
    if errors:
        lines.append("")
        lines.append("Load errors:")
        lines += [f"  {i['name']}: {i['error']} [stage: {i.get('stage') or 'load'}]" for i in errors]
        lines.append("Disable a plugin with GPERC_DISABLE_PLUGINS=<name> or 'gperc --disable-plugins <name>'.")
    return "\n".join(line.rstrip() for line in lines) + "\n"
