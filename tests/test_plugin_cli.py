"""Tests of `gperc plugins`: the table, --json, allow/block flags, and broken plugins installed.

The fake plugin distributions of tests/fixtures/fake_plugins are "installed" by putting their
folders on PYTHONPATH of a `python -m gperc_core` subprocess, the way pip would put them on
sys.path; the in-process tests call `gperc_core.cli.main` directly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from gperc_core.cli import main
from gperc_core.cli.plugins import format_table
from gperc_core.plugins.manager import reset_default_plugin_manager
from gperc_core.testing import write_dist_info

FAKES = Path(__file__).parent / "fixtures" / "fake_plugins"
BROKEN = ("raises", "oldcore", "misspelled")
FAKE_ALLOW = "fakegood,fakeraises,fakeoldcore,fakemisspelled"


def run_gperc(*args: str, dirs=("good", *BROKEN), env_extra=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPERC_")}
    env.update(PYTHONPATH=os.pathsep.join(str(FAKES / d) for d in dirs), PYTHONDONTWRITEBYTECODE="1",
               OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "gperc_core", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_plugins_json_works_with_broken_plugins_installed():
    result = run_gperc("plugins", "--json")
    assert result.returncode == 0, result.stderr
    infos = {i["name"]: i for i in json.loads(result.stdout)}
    good = infos["fakegood"]
    assert (good["distribution"], good["version"], good["error"], good["enabled"]) == ("gperc-fake-good", "1.0",
                                                                                       None, True)
    assert good["registered"] == {"modalities": ["fakevec", "faketok"], "datasets": ["fakevec-sign"],
                                  "tasks": ["fakevec/sign"]}
    assert "gperc_tokenizer" in good["hooks"]
    assert infos["fakeraises"]["error"].startswith("ImportError: gperc_fake_raises needs")
    assert "requires gperc-core<0.1" in infos["fakeoldcore"]["error"]
    assert "did you mean 'gperc_input_array'" in infos["fakemisspelled"]["error"]
    assert all(infos[n]["hooks"] == [] for n in ("fakeraises", "fakeoldcore", "fakemisspelled"))
    assert "PluginWarning" not in result.stderr  # the listing reports load errors itself, once


def test_plugins_table_in_strict_mode_with_flags():
    result = run_gperc("--plugins", FAKE_ALLOW, "--disable-plugins", "fakeoldcore", "plugins",
                       env_extra={"GPERC_STRICT_PLUGINS": "1"})
    # strict mode lists everything, then fails the check (issue 14: CI runs `gperc plugins` strictly)
    assert result.returncode == 1, result.stderr
    assert "gperc: error: 2 broken plugin(s): fakemisspelled, fakeraises (strict mode" in result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line and line[0] != " "}
    assert rows["fakegood"][1:4] == ["gperc-fake-good", "1.0", "ok"]
    assert rows["fakeoldcore"][3] == "disabled" and rows["fakeraises"][3] == "error"
    assert "input_array,datasets,modalities,tasks,tokenizer" in rows["fakegood"]
    assert "modalities: fakevec, faketok; datasets: fakevec-sign; tasks: fakevec/sign" in result.stdout
    assert "Load errors:" in result.stdout and "  fakeraises: ImportError" in result.stdout
    assert "[stage: import]" in result.stdout and "[stage: hooks]" in result.stdout
    assert "fakeoldcore:" not in result.stdout.split("Load errors:")[1]
    # uninstalling (the folder off the path) removes the plugins from the listing
    gone = run_gperc("plugins", "--json", dirs=())
    assert gone.returncode == 0 and not {i["name"] for i in json.loads(gone.stdout)} & set(FAKE_ALLOW.split(","))


def test_plugins_command_in_process(monkeypatch, capsys):
    for d in ("good", "raises"):
        monkeypatch.syspath_prepend(str(FAKES / d))
    monkeypatch.delenv("GPERC_STRICT_PLUGINS", raising=False)
    reset_default_plugin_manager()
    assert main(["--plugins", "fakegood,fakeraises", "--disable-plugins", "fakeraises", "plugins", "--json"]) == 0
    infos = {i["name"]: i for i in json.loads(capsys.readouterr().out)}
    assert infos["fakegood"]["enabled"] and not infos["fakeraises"]["enabled"]
    assert infos["fakeraises"]["error"] is None  # a disabled plugin is never imported
    assert main(["--plugins", "fakegood,fakeraises", "plugins"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS", "REGISTERED"]
    assert "fakeraises: ImportError: gperc_fake_raises needs the package 'nonexistent-dependency'" in out
    assert main(["--plugins", "fakegood,fakegod", "plugins"]) == 0
    assert "gperc: warning: the plugin allow-list" in capsys.readouterr().err  # a typo is pointed out
    with pytest.raises(SystemExit) as exit_info:  # --help works with a broken plugin installed
        main(["--help"])
    assert exit_info.value.code == 0 and "plugins" in capsys.readouterr().out


@pytest.mark.parametrize("infos, expected", [
    ([], "No gperc plugins installed"),
    ([{"name": "p", "distribution": None, "version": None, "hooks": [], "enabled": True, "error": None,
       "registered": {"modalities": [], "datasets": [], "tasks": []}}], "p       (in-process)  -        ok      -"),
])
def test_format_table_edge_cases(infos, expected):
    assert expected in format_table(infos)


# --------------------------------------------------------------------- the "Write a plugin" documentation
DOC = Path(__file__).parent.parent / "docs" / "write-a-plugin.md"
DOC_FILE = re.compile(r"^File `([^`]+)`:\n\n```\w*\n(.*?)^```$", re.S | re.M)


def install_doc_plugin(root: Path) -> tuple[Path, Path]:
    """Write the files of the documented plugin under ``root`` exactly as the doc shows them, and
    install them the way pip does (a dist-info built from its pyproject.toml); returns (project, site)."""
    files = DOC_FILE.findall(DOC.read_text())
    assert len(files) == 4, [path for path, _ in files]
    for path, text in files:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    project_dir = root / "gperc-plugin-series"
    project = tomllib.loads((project_dir / "pyproject.toml").read_text())["project"]
    site = root / "site"
    write_dist_info(site, project["name"], project["entry-points"]["gperc"], version=project["version"],
                    requires=project["dependencies"])
    shutil.copytree(project_dir / "gperc_plugin_series", site / "gperc_plugin_series")
    return project_dir, site


def test_the_documented_plugin_works_as_written(tmp_path, monkeypatch, capsys):
    project_dir, site = install_doc_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "gperc_plugin_series", raising=False)
    monkeypatch.delitem(sys.modules, "gperc_plugin_series.plugin", raising=False)
    # it appears in `gperc plugins`
    assert main(["--plugins", "series", "plugins", "--json"]) == 0
    (info,) = [i for i in json.loads(capsys.readouterr().out) if i["name"] == "series"]
    assert (info["distribution"], info["version"], info["error"]) == ("gperc-plugin-series", "0.1.0", None)
    assert info["registered"] == {"modalities": ["series"], "datasets": ["trends"], "tasks": ["series/trends"]}
    # its task builds and its model runs on a batch
    from gperc_core.plugins.manager import get_plugin_manager
    from gperc_core.data.tasks import create_task

    pm = get_plugin_manager(allow=["series"], strict=True)
    task = create_task("series/trends", pm=pm)
    batch = task.split("train").batch(torch.arange(8))
    logits = task.build_model()(batch["input_array"], batch["attention_mask"], batch["output_array"])
    assert logits.shape == (8, 3) and bool(torch.isfinite(logits).all())
    # its own conformance test passes, run by pytest the way the doc says
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project_dir / "tests")],
                            capture_output=True, text=True, timeout=180, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1",
                                 "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "7 passed" in result.stdout
