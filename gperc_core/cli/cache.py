"""``gperc cache list|clear``: show and free the on-disk cache of converted samples.

``gperc cache list`` prints one line per entry (dataset/split/modality, the subset it holds, rows,
size, creation time, folder name) and the total; ``--json`` prints the entries as JSON.
``gperc cache clear [PATTERN]`` deletes the entries whose folder name or ``dataset/split/modality``
matches the fnmatch ``PATTERN`` (all entries without one) and prints what it freed. The cache lives in
``$GPERC_DATA_CACHE``, else ``$GPERC_CACHE/converted``, else ``~/.cache/gperc/converted``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``cache`` subcommand (``list``, ``clear``) to ``subparsers``."""
    parser = subparsers.add_parser("cache", help="show or free the on-disk cache of converted samples",
                                   description="Show (list) or free (clear) the cache of converted samples.")
    parser.add_argument("--root", default=None, help="the cache folder (default: $GPERC_DATA_CACHE, else "
                                                     "$GPERC_CACHE/converted, else ~/.cache/gperc/converted)")
    sub = parser.add_subparsers(dest="cache_command", metavar="ACTION")
    listing = sub.add_parser("list", help="list the cache entries with their sizes")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=run_list)
    clear = sub.add_parser("clear", help="delete cache entries (all, or those matching PATTERN)")
    clear.add_argument("pattern", nargs="?", default=None,
                       help="fnmatch pattern on the entry name or dataset/split/modality, e.g. 'digits/*'")
    clear.set_defaults(func=run_clear)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def run_list(args: argparse.Namespace) -> int:
    """Print the cache entries; returns 0."""
    from gperc_core.api.cache import cache_entries
    from gperc_core.data.cache import converted_root, format_bytes

    rows = cache_entries(args.root)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"cache: {converted_root(args.root)}")
    for e in rows:
        what = f"{e['dataset']}/{e['split']}/{e['modality']}" if e["ok"] else f"({e['problem']})"
        rows_text = f"{e['rows']} rows" if e["ok"] else ""
        print(f"  {what:<40} {str(e['selection'] or ''):<18} {rows_text:>12} {format_bytes(e['bytes']):>10}  "
              f"{e['created'] or '':<24} {e['name']}")
    print(f"total: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}, "
          f"{format_bytes(sum(e['bytes'] for e in rows))}")
    return 0


def run_clear(args: argparse.Namespace) -> int:
    """Delete matching cache entries and print what was freed; returns 0."""
    from gperc_core.api.cache import clear_cache
    from gperc_core.data.cache import format_bytes

    done = clear_cache(args.pattern, args.root)
    n = len(done["removed"])
    for e in done["removed"]:
        print(f"  removed {e['name']} ({format_bytes(e['bytes'])})")
    print(f"removed {n} entr{'y' if n == 1 else 'ies'}, freed {format_bytes(done['bytes'])}")
    return 0
