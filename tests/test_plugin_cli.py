"""Tests of `gperc plugins`: the table, --json, allow/block flags, and broken plugins installed.

The fake plugin distributions of tests/fixtures/fake_plugins are "installed" by putting their
folders on PYTHONPATH of a `python -m gperc_core` subprocess, the way pip would put them on
sys.path; the in-process tests call `gperc_core.cli.main` directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gperc_core.cli import main
from gperc_core.cli.plugins import format_table
from gperc_core.plugins import reset_default_plugin_manager

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
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line and line[0] != " "}
    assert rows["fakegood"][1:4] == ["gperc-fake-good", "1.0", "ok"]
    assert rows["fakeoldcore"][3] == "disabled" and rows["fakeraises"][3] == "error"
    assert "input_array,datasets,modalities,tasks,tokenizer" in rows["fakegood"]
    assert "modalities: fakevec, faketok; datasets: fakevec-sign; tasks: fakevec/sign" in result.stdout
    assert "Load errors:" in result.stdout and "  fakeraises: ImportError" in result.stdout
    assert "fakeoldcore:" not in result.stdout.split("Load errors:")[1]
    # uninstalling (the folder off the path) removes the plugin; --help never loads plugins
    gone = run_gperc("--help", dirs=())
    assert gone.returncode == 0 and "plugins" in gone.stdout


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


@pytest.mark.parametrize("infos, expected", [
    ([], "No gperc plugins installed"),
    ([{"name": "p", "distribution": None, "version": None, "hooks": [], "enabled": True, "error": None,
       "registered": {"modalities": [], "datasets": [], "tasks": []}}], "p       (in-process)  -        ok      -"),
])
def test_format_table_edge_cases(infos, expected):
    assert expected in format_table(infos)
