"""Issue 14: a plugin that fails anywhere is dropped whole, strict mode fails every command, and errors
raised in plugin code at run time are one ``gperc: error:`` line naming the plugin.

Fake plugin distributions (dist-info + module, as pip installs them) are written once per module into
a temporary site folder and put on ``PYTHONPATH`` of ``python -m gperc_core`` subprocesses, next to the
well-behaved ``fakegood`` of tests/fixtures/fake_plugins (which must keep working throughout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gperc_core.testing import write_fake_distribution

FAKES = Path(__file__).parent / "fixtures" / "fake_plugins"

HEADER = '''
from gperc_core import DatasetSpec, InputArray, ModalitySpec, hookimpl
import torch

def _load(name):
    return lambda split, options: [{name: [float(i), 1.0], "target": i % 2} for i in range(6)]

def _card(name, **extra):
    return {"name": f"{name}/one", "modalities": [name], "dataset": f"{name}-data", **extra}

def _array(sample):
    return InputArray(torch.tensor(sample, dtype=torch.float32).unsqueeze(1))
'''

# plugin name -> (the module's hooks, written after HEADER)
PLUGINS = {
    # gperc_register_datasets raises: its modality and task must not stay behind
    "regds": '''
@hookimpl
def gperc_register_modalities():
    return [ModalitySpec("tsa")]

@hookimpl
def gperc_register_datasets():
    raise RuntimeError("cannot list datasets")

@hookimpl
def gperc_register_tasks():
    return [_card("tsa")]
''',
    # the modality hook returns the wrong type
    "wrongmod": '''
@hookimpl
def gperc_register_modalities():
    return [{"name": "tsb"}]

@hookimpl
def gperc_register_datasets():
    return [DatasetSpec("tsb-data", ["tsb"], _load("tsb"), num_classes=2)]

@hookimpl
def gperc_register_tasks():
    return [_card("tsb")]
''',
    # a card with an unknown training key: only this plugin goes, not `gperc tasks`
    "badcard": '''
@hookimpl
def gperc_register_modalities():
    return [ModalitySpec("tsc")]

@hookimpl
def gperc_register_datasets():
    return [DatasetSpec("tsc-data", ["tsc"], _load("tsc"), num_classes=2)]

@hookimpl
def gperc_register_tasks():
    return [_card("tsc", training={"epoch": 3})]

@hookimpl
def gperc_input_array(modality, sample, options, tokenizer):
    return _array(sample) if modality == "tsc" else None
''',
    # registers fine, raises at run time
    "runtime": '''
@hookimpl
def gperc_register_modalities():
    return [ModalitySpec("tsd")]

@hookimpl
def gperc_register_datasets():
    return [DatasetSpec("tsd-data", ["tsd"], _load("tsd"), num_classes=2)]

@hookimpl
def gperc_register_tasks():
    return [_card("tsd")]

@hookimpl
def gperc_input_array(modality, sample, options, tokenizer):
    if modality != "tsd":
        return None
    if sample[0] >= 3:
        raise RuntimeError("sample too spiky")
    return _array(sample)
''',
    # installed, but its hook does not answer for its own modality
    "noanswer": '''
@hookimpl
def gperc_register_modalities():
    return [ModalitySpec("tse")]

@hookimpl
def gperc_register_datasets():
    return [DatasetSpec("tse-data", ["tse"], _load("tse"), num_classes=2)]

@hookimpl
def gperc_register_tasks():
    return [_card("tse")]

@hookimpl
def gperc_input_array(modality, sample, options, tokenizer):
    return _array(sample) if modality == "tsE" else None
''',
}
ALLOW = ",".join(["fakegood", *PLUGINS])


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    for name, hooks in PLUGINS.items():
        write_fake_distribution(root, f"gperc-fake-{name}", f"gperc_fake_{name}", textwrap.dedent(HEADER + hooks),
                                plugin_name=name)
    return root


def gperc(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GPERC_")}
    clean.update(PYTHONPATH=os.pathsep.join([str(site), str(FAKES / "good"), *sys.path]), GPERC_PLUGINS=ALLOW,
                 PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "gperc_core", *args], capture_output=True, text=True, env=clean,
                          timeout=120)


def test_gperc_plugins_shows_each_broken_plugin_with_its_stage(site):
    result = gperc(site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    infos = {i["name"]: i for i in json.loads(result.stdout)}
    stages = {name: (infos[name]["stage"], infos[name]["error"]) for name in PLUGINS}
    assert stages["regds"] == ("gperc_register_datasets", "RuntimeError: cannot list datasets")
    assert stages["wrongmod"][0] == "gperc_register_modalities"
    assert "gperc_register_modalities()[0]: expected a ModalitySpec, got dict" in stages["wrongmod"][1]
    assert stages["badcard"][0] == "task card"
    assert "task card 'tsc/one' of plugin 'badcard': training.epoch: unknown training setting" in stages["badcard"][1]
    assert stages["runtime"] == (None, None) and stages["noanswer"] == (None, None)
    # dropped whole: nothing registered, but what it would have registered is known
    assert infos["regds"]["registered"] == {"modalities": [], "datasets": [], "tasks": []}
    assert infos["regds"]["withheld"] == {"modalities": ["tsa"], "datasets": [], "tasks": ["tsa/one"]}
    assert infos["badcard"]["withheld"]["datasets"] == ["tsc-data"]
    assert infos["fakegood"]["error"] is None and infos["fakegood"]["registered"]["tasks"] == ["fakevec/sign"]

    strict = gperc(site, "plugins", GPERC_STRICT_PLUGINS="1")
    assert strict.returncode == 1
    assert "Load errors:" in strict.stdout and "[stage: task card]" in strict.stdout
    assert "gperc: error: 3 broken plugin(s): badcard, regds, wrongmod" in strict.stderr
    assert gperc(site, "--strict-plugins", "plugins").returncode == 1


def test_gperc_tasks_lists_a_broken_plugins_tasks_as_unavailable(site):
    result = gperc(site, "tasks", "one")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for task, plugin in (("tsa/one", "regds"), ("tsc/one", "badcard")):
        row = next(i for i, line in enumerate(lines) if line.split()[1:2] == [task])
        assert lines[row].startswith("!! ")
        assert f"unavailable: task {task!r} comes from plugin {plugin!r} (gperc-fake-{plugin} 1.0), which is " \
               f"installed but broken" in lines[row + 1]
        assert "'gperc plugins' shows the details" in lines[row + 1]
    assert any(line.startswith("ok tsd/one") for line in lines)
    assert "not installed" not in result.stdout and "pip install" not in result.stdout
    assert "unavailable (broken plugins: see 'gperc plugins')" in lines[-1]
    good = gperc(site, "tasks", "fakevec")  # every other plugin keeps working
    assert good.returncode == 0 and good.stdout.startswith("ok fakevec/sign")
    strict = gperc(site, "--strict-plugins", "tasks")
    assert strict.returncode == 2
    assert "gperc: error: 3 broken plugin(s) (strict mode" in strict.stderr and "regds" in strict.stderr


def test_training_a_broken_plugins_task_says_it_is_broken_not_missing(site, tmp_path):
    result = gperc(site, "train", "tsa/one", "--out", str(tmp_path / "run"), "--max-steps", "1")
    assert result.returncode == 2
    assert "gperc: error: task 'tsa/one': unavailable: task 'tsa/one' comes from plugin 'regds' " \
           "(gperc-fake-regds 1.0), which is installed but broken (failed at gperc_register_datasets: " \
           "RuntimeError: cannot list datasets)" in result.stderr
    assert "pip install" not in result.stderr


def test_a_hook_raising_at_run_time_is_one_gperc_error_line(site, tmp_path):
    result = gperc(site, "train", "tsd/one", "--out", str(tmp_path / "run"), "--max-steps", "1",
                   GPERC_PLUGINS="fakegood,runtime")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gperc: error: plugin 'runtime' (gperc-fake-runtime 1.0) raised in gperc_input_array (modality 'tsd', "
        "split 'train', sample 3): RuntimeError: sample too spiky"]
    traced = gperc(site, "--traceback", "train", "tsd/one", "--out", str(tmp_path / "run2"), "--max-steps", "1")
    assert traced.returncode == 2 and "Traceback (most recent call last)" in traced.stderr
    assert 'raise RuntimeError("sample too spiky")' in traced.stderr
    assert traced.stderr.strip().splitlines()[-1].startswith("gperc: error: plugin 'runtime'")
    env = gperc(site, "train", "tsd/one", "--out", str(tmp_path / "run3"), "--max-steps", "1", GPERC_TRACEBACK="1")
    assert "Traceback (most recent call last)" in env.stderr
    # other broken plugins are warned about once each, as gperc warnings, and do not stop the task's error
    warned = [line for line in env.stderr.splitlines() if line.startswith("gperc: warning: gperc plugin")]
    assert len(warned) == 3 and "PluginWarning" not in env.stderr


def test_an_installed_plugin_that_does_not_answer_for_its_modality_is_named(site, tmp_path):
    result = gperc(site, "train", "tse/one", "--out", str(tmp_path / "run"), "--max-steps", "1")
    assert result.returncode == 2
    assert "plugin 'noanswer' (gperc-fake-noanswer 1.0) is installed and registers modality 'tse', but its " \
           "gperc_input_array returned None for it" in result.stderr
    assert "pip install" not in result.stderr


def test_config_comes_from_the_training_split_and_longer_inputs_name_the_setting(monkeypatch):
    from gperc_core.data.tasks import create_task
    from gperc_core.errors import InputError
    from gperc_core.plugins.manager import get_plugin_manager

    monkeypatch.syspath_prepend(str(FAKES / "good"))
    pm = get_plugin_manager(allow=["fakegood"], strict=True)
    task = create_task("fakevec/sign", pm=pm)
    assert task.config.input_len == 4  # the longest training sample; the test split is never read for it
    assert len(task.split("test")) == 2
    assert task.encode([{"fakevec": [1.0, 2.0]}])["input_array"].shape[1] == 2
    with pytest.raises(InputError, match=r"input: sample 0 of modality 'fakevec' has 6 elements, more than the "
                                         r"model's input_len 4 .* --set model.input_len=6"):
        task.encode([{"fakevec": [1.0] * 6}])
