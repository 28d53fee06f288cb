"""``gperc tasks [PATTERN] [--json]``: the known tasks, whether they are installed, their baselines.

Each line starts with ``ok`` (installed), ``--`` (its plugin is not installed; the ``pip install``
line follows) or ``!!`` (its plugin is installed but broken; why, and a pointer to ``gperc plugins``,
follows).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``tasks`` command."""
    parser = subparsers.add_parser("tasks", help="list the known tasks (fnmatch PATTERN, e.g. 'image/*')",
                                   description="List the tasks of the registry and of the installed plugins.")
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern; a plain word matches as *WORD*")
    parser.add_argument("--json", action="store_true", help="print the task cards as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the matching tasks; returns 0, or 1 when none matches."""
    from gperc_core.api.catalog import known_tasks
    from gperc_core.plugins.manager import plugin_manager_from_args

    rows = known_tasks(args.pattern, pm=plugin_manager_from_args(args))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0 if rows else 1
    if not rows:
        print(f"no task matches {args.pattern!r}; 'gperc tasks' lists them all")
        return 1
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        mark = "ok " if r["installed"] else "!! " if r.get("unavailable") else "-- "
        baseline = r.get("baseline") or {}
        base = f"  [baseline {baseline['accuracy']:.3f}]" if isinstance(baseline.get("accuracy"), float) else ""
        print(f"{mark}{r['name']:<{width}}  {r.get('description', '')}{base}")
        if r.get("unavailable"):
            print(f"   {'':<{width}}  unavailable: {r['unavailable']}")
        elif not r["installed"]:
            print(f"   {'':<{width}}  not installed: {r['install']}")
    n_ok = sum(r["installed"] for r in rows)
    n_broken = sum(bool(r.get("unavailable")) for r in rows)
    print(f"{len(rows)} tasks, {n_ok} installed" + (f", {n_broken} unavailable (broken plugins: see 'gperc plugins')"
                                                     if n_broken else ""))
    return 0
