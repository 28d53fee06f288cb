"""Regenerate the benchmark results shown by README.md (short tables) and the docs site (full pages).

- README.md: everything between ``<!-- results:begin -->`` and ``<!-- results:end -->`` is made
  here from bench/results.json: the task accuracy table and the core benchmark summary, each with
  the command that measures it and a link to its full page.
- docs/bench.md, docs/bench-tasks.md, docs/bench-pipeline.md: copies of the full tables
  bench/core.md, bench/tasks.md and bench/pipeline.md that ``make bench``, ``make bench-tasks`` and
  ``bench/pipeline.py`` write, so the site shows the latest figures.

Run it after any benchmark (the Makefile targets do): ``.venv/bin/python bench/update_readme.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from core.report import NAMES, PEERS  # noqa: E402

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

# (full table written by a benchmark, docs page that shows it)
PAGES: list[tuple[str, str]] = [
    ("bench/core.md", "docs/bench.md"),
    ("bench/tasks.md", "docs/bench-tasks.md"),
    ("bench/pipeline.md", "docs/bench-pipeline.md"),
]


def _gib(mb: Any) -> str:
    return f"{mb / 1024:.1f} GiB" if isinstance(mb, (int, float)) else "-"


def tasks_table(tasks: dict[str, Any]) -> str:
    """Return the short Markdown table of the task results (bench/tasks.py's summaries): test accuracy
    mean ± std over seeds or folds beside the card's goal and baseline, and the training time."""
    from tasks import accuracy_cell, card_entry, goal_cell

    lines = ["| task | test accuracy, mean ± std | goal (test) | baseline | training | status |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name in sorted(tasks):
        s = card_entry(tasks[name])["summary"]
        base = s.get("baseline") or {}
        baseline = f"{base['accuracy']:.3f}" if "accuracy" in base else "-"
        seconds = s.get("train_time_s_mean")
        took = "-" if not isinstance(seconds, (int, float)) else (
            f"{seconds / 60:.1f} min" if seconds >= 6 else "< 0.1 min")
        training = f"{s.get('epochs', '-')} epochs, {took}"
        lines.append(f"| {name} | {accuracy_cell(s)} | {goal_cell(s)} | {baseline} | {training} | {s.get('status', '-')} |")
    return "\n".join(lines) + "\n"


def core_table(runs: list[dict[str, Any]]) -> str:
    """Return the short Markdown table of the core benchmark: gperc against the fastest peer that
    trained, per shape and precision (samples/s and peak memory)."""
    lines = ["| shape | precision | gperc samples/s | fastest peer samples/s | gperc peak RSS | that peer's peak RSS |",
             "| --- | --- | ---: | --- | ---: | ---: |"]
    keys = list(dict.fromkeys((r["shape"], r["precision"]) for r in runs))
    for shape, precision in keys:
        same = [r for r in runs if (r["shape"], r["precision"]) == (shape, precision)]
        gperc = next((r for r in same if r["impl"] == "gperc"), None)
        if gperc is None:
            continue
        peers = [r for r in same if r["impl"] in PEERS and r.get("status") == "ok"]
        best = max(peers, key=lambda r: r["samples_per_s"], default=None)
        ours = f"{gperc['samples_per_s']:.2f}" if gperc.get("status") == "ok" else "failed"
        theirs = (f"{best['samples_per_s']:.2f} ({NAMES.get(best['impl'], best['impl'])})" if best
                  else "none trained")
        lines.append(f"| {shape} | {precision} | {ours} | {theirs} | {_gib(gperc.get('peak_rss_mb'))} | "
                     f"{_gib(best.get('peak_rss_mb')) if best else '-'} |")
    return "\n".join(lines) + "\n"


def results_section(results: dict[str, Any]) -> str:
    """Return the README's results part (without the markers) from the parsed bench/results.json."""
    parts = []
    if results.get("tasks"):
        parts += ["### Task accuracy", "",
                  "`make bench-tasks` trains every task with its card's defaults on the build machine's CPU, "
                  "over 3 seeds (10 folds for cross-validated cards; where a row says so, the 10 folds repeated "
                  "with 3 seeds), chooses each run's checkpoint on the "
                  "validation split and tests it once; the full table (time to the goal, samples/s, load, "
                  "the command of each row) is [docs/bench-tasks.md](docs/bench-tasks.md).", "",
                  tasks_table(results["tasks"])]
    core = results.get("core") or {}
    if core.get("runs"):
        parts += ["### One training step against other Perceiver implementations", "",
                  "`make bench` measures one training step of gperc and of three peer implementations in "
                  "separate processes; shapes: cifar (B=32, M=1024), long (B=2, M=65,536), huge (B=1, "
                  "M=1,048,576). Every figure and the method: [docs/bench.md](docs/bench.md); pipeline "
                  "and data parallelism on one machine: [docs/bench-pipeline.md](docs/bench-pipeline.md).",
                  "", core_table(core["runs"])]
    return "\n".join(parts).strip() + "\n"


def write_pages(root: Path = ROOT) -> list[Path]:
    """Copy each full benchmark table into its docs page; a missing table is skipped with a warning.
    Returns the pages written."""
    written = []
    for source, page in PAGES:
        src = root / source
        if not src.is_file():
            print(f"update_readme: {source} not found, {page} left as it is", file=sys.stderr)
            continue
        note = f"<!-- generated by bench/update_readme.py from {source}: rerun the benchmark, do not edit -->"
        (root / page).write_text(f"{note}\n\n{src.read_text().strip()}\n")
        written.append(root / page)
    return written


def update_readme(root: Path = ROOT) -> Path:
    """Replace the results part of README.md in place from bench/results.json; returns its path."""
    readme = root / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md: expected the markers {BEGIN} and {END}")
    results_path = root / "bench" / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n<!-- generated by bench/update_readme.py from bench/results.json -->\n\n"
                      f"{results_section(results)}\n{END}{tail}")
    return readme


if __name__ == "__main__":
    for path in write_pages():
        print(path)
    print(update_readme())
