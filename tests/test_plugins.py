"""Tests of the plugin manager (gperc_core.plugins.manager) and the conformance suite (gperc_core.testing).

Entry-point plugins are the fake distributions under tests/fixtures/fake_plugins (a dist-info folder
with METADATA and entry_points.txt, plus a module), put on sys.path for one test at a time.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from gperc_core import DatasetSpec, InputArray, ModalitySpec, PluginError, TaskError, hookimpl
from gperc_core.plugins import manager as plugins_module
from gperc_core.data.collate import Collator
from gperc_core.testing.conformance import ConformanceError, run_conformance
from gperc_core.plugins.manager import (PluginWarning, check_core_requirement, default_plugin_manager, get_plugin_manager,
                                plugin_manager_from_args, reset_default_plugin_manager)
from gperc_core.testing import PluginConformance

FAKES = Path(__file__).parent / "fixtures" / "fake_plugins"


def make_plugin(name: str, **hooks) -> types.ModuleType:
    """Return a plugin module named ``name`` whose hook implementations are ``hooks``."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def modalities_plugin(name: str, *modalities: str) -> types.ModuleType:
    return make_plugin(name, gperc_register_modalities=lambda: [ModalitySpec(m) for m in modalities])


@pytest.fixture
def fakes(monkeypatch):
    """Put the named fake distributions on sys.path (and clear env settings); returns the adder."""
    for var in ("GPERC_PLUGINS", "GPERC_DISABLE_PLUGINS", "GPERC_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    reset_default_plugin_manager()

    def add(*dirs: str) -> None:
        for d in dirs:
            monkeypatch.syspath_prepend(str(FAKES / d))
    yield add
    reset_default_plugin_manager()


def load_fakes(**kwargs):
    """Build a manager from the fake entry points on sys.path only (real installed plugins are left out)."""
    on_path = [f"fake{Path(p).name}" for p in sys.path if Path(p).parent == FAKES]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = get_plugin_manager(allow=kwargs.pop("allow", on_path), **kwargs)
    return pm, [w for w in caught if issubclass(w.category, PluginWarning)]


# --------------------------------------------------------------------- in-process plugins
def test_in_process_plugin_registrations_are_stamped_copies():
    spec = ModalitySpec("wave", input_type="raw")
    dataset = DatasetSpec("waves", ["wave"], load=lambda split, options: [])
    plugin = make_plugin("waveplugin", gperc_register_modalities=lambda: [spec],
                         gperc_register_datasets=lambda: [dataset],
                         gperc_register_tasks=lambda: [{"name": "wave/sines", "modalities": ["wave"]}])
    pm = get_plugin_manager(entry_points=False, plugins=[plugin])
    assert pm.modality("wave").plugin == "waveplugin" and pm.dataset("waves").plugin == "waveplugin"
    assert pm.task_cards == [{"name": "wave/sines", "modalities": ["wave"], "plugin": "waveplugin"}]
    assert spec.plugin is None and dataset.plugin is None  # the plugin's own objects are left alone
    (info,) = pm.plugins_info()
    assert info.hooks == ["gperc_register_datasets", "gperc_register_modalities", "gperc_register_tasks"]
    assert info.registered == {"modalities": ["wave"], "datasets": ["waves"], "tasks": ["wave/sines"]}
    assert info.error is None and info.enabled and info.distribution is None


@pytest.mark.parametrize("hook, item", [
    ("gperc_register_modalities", lambda: ModalitySpec("same")),
    ("gperc_register_datasets", lambda: DatasetSpec("same", ["x"], load=lambda s, o: [])),
    ("gperc_register_tasks", lambda: {"name": "same", "modalities": ["x"]}),
])
def test_a_name_registered_twice_is_an_error_naming_both_plugins(hook, item):
    first = make_plugin("first", **{hook: lambda: [item()]})
    second = make_plugin("second", **{hook: lambda: [item()]})
    pm = get_plugin_manager(entry_points=False, plugins=[first, second])
    attribute = {"gperc_register_modalities": "modalities", "gperc_register_datasets": "datasets",
                 "gperc_register_tasks": "task_cards"}[hook]
    with pytest.raises(PluginError, match=r"'same' is registered by both plugin 'first' and plugin 'second'"):
        getattr(pm, attribute)
    errors = {info.name: info.error for info in pm.plugins_info()}
    assert "'first'" in errors["first"] and "'second'" in errors["second"]


def test_unknown_names_suggest_close_ones_and_the_install_hint():
    pm = get_plugin_manager(entry_points=False, plugins=[
        make_plugin("p", gperc_register_modalities=lambda: [ModalitySpec("image")],
                    gperc_register_datasets=lambda: [DatasetSpec("fashion-mnist", ["image"], lambda s, o: [])])])
    with pytest.raises(PluginError, match=r"modality 'imag' .*did you mean 'image'.*pip install gperc-plugin-imag"):
        pm.modality("imag")
    with pytest.raises(PluginError, match=r"'audio' is not installed.*pip install gperc-plugin-audio"):
        pm.modality("audio")
    with pytest.raises(TaskError, match=r"dataset 'fashion-mnst' .*did you mean 'fashion-mnist'"):
        pm.dataset("fashion-mnst")


def test_misspelled_or_malformed_hooks_fail_loudly_in_process():
    misspelled = make_plugin("typo", gperc_input_arary=lambda modality, sample, options: None)
    with pytest.raises(PluginError, match=r"'gperc_input_arary' \(did you mean 'gperc_input_array'\?\)"):
        get_plugin_manager(entry_points=False, plugins=[misspelled])
    extra_argument = make_plugin("extra", gperc_input_array=lambda modality, sample, options, colour: None)
    with pytest.raises(PluginError, match=r"plugin 'extra'.*colour"):
        get_plugin_manager(entry_points=False, plugins=[extra_argument])
    pm = get_plugin_manager(entry_points=False, plugins=[modalities_plugin("one", "a")])
    with pytest.raises(PluginError, match=r"plugin 'one'"):
        pm.register(modalities_plugin("one", "b"))
    pm.check_pending()  # nothing unknown was left registered
    pm.unregister(name="one")
    assert pm.plugins_info() == [] and pm.modalities == {}


def test_a_broken_registration_hook_is_isolated_or_fatal_when_strict():
    def broken():
        raise RuntimeError("cannot list modalities")
    bad = make_plugin("bad", gperc_register_modalities=broken)
    wrong_type = make_plugin("wrongtype", gperc_register_datasets=lambda: ModalitySpec("x"))
    good = modalities_plugin("good", "ok")
    pm = get_plugin_manager(entry_points=False, strict=False, plugins=[bad, wrong_type, good])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert list(pm.modalities) == ["ok"]
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert len(messages) == 2
    assert "'bad' (no distribution) was skipped: RuntimeError: cannot list modalities. Disable it with " \
        "GPERC_DISABLE_PLUGINS=bad" in messages[0]
    errors = {info.name: info.error for info in pm.plugins_info()}
    assert errors["good"] is None and "cannot list modalities" in errors["bad"]
    assert "must return a list of DatasetSpec, got ModalitySpec" in errors["wrongtype"]
    strict = get_plugin_manager(entry_points=False, strict=True, plugins=[bad, good])
    with pytest.raises(PluginError, match=r"'bad'.*GPERC_STRICT_PLUGINS=1"):
        strict.modalities


def test_check_core_requirement():
    assert check_core_requirement(">=0.1,<0.2", "x", core_version="0.1.0") is None
    assert check_core_requirement(None, "x") is None
    reason = check_core_requirement("<0.1", "GPERC_CORE_REQUIRES of p", core_version="0.1.0")
    assert "requires gperc-core<0.1 (GPERC_CORE_REQUIRES of p), but gperc-core 0.1.0 is installed" in reason
    assert "expected a version specifier" in check_core_requirement("banana", "x")


# --------------------------------------------------------------------- entry points
def test_entry_point_plugin_loads_with_its_distribution(fakes):
    fakes("good")
    pm, caught = load_fakes()
    assert not caught
    assert set(pm.modalities) == {"fakevec", "faketok"}
    assert {m.plugin for m in pm.modalities.values()} == {"fakegood"}
    info = {i.name: i for i in pm.plugins_info()}["fakegood"]
    assert (info.distribution, info.version, info.module) == ("gperc-fake-good", "1.0", "gperc_fake_good")
    assert "gperc_input_array" in info.hooks and info.registered["tasks"] == ["fakevec/sign"]
    array = pm.hook.gperc_input_array(modality="fakevec", sample=[1.0, -2.0], options={}, tokenizer=None)
    assert array.array.shape == (2, 2) and array.target.tolist() == [1, 0]


def test_broken_plugins_are_skipped_with_a_warning_that_says_how_to_disable_them(fakes, monkeypatch):
    fakes("good", "raises", "oldcore", "misspelled")
    monkeypatch.delitem(sys.modules, "gperc_fake_oldcore", raising=False)
    pm, caught = load_fakes()
    messages = "\n".join(str(w.message) for w in caught)
    assert "'fakeraises' (distribution gperc-fake-raises 1.0) was skipped: ImportError: gperc_fake_raises needs" \
        in messages
    assert "GPERC_DISABLE_PLUGINS=fakeraises" in messages and "pip uninstall gperc-fake-raises" in messages
    assert "requires gperc-core<0.1,>=0.0.1 (Requires-Dist of gperc-fake-oldcore)" in messages
    assert "'gperc_input_arary' (did you mean 'gperc_input_array'?)" in messages
    assert "gperc_fake_oldcore" not in sys.modules  # the core range is checked before import
    assert set(pm.modalities) == {"fakevec", "faketok"}  # the good plugin still works
    assert pm.get_plugin("fakemisspelled") is None
    errors = {i.name: i.error for i in pm.plugins_info()}
    assert errors["fakegood"] is None and all(errors[n] for n in ("fakeraises", "fakeoldcore", "fakemisspelled"))


def test_strict_mode_makes_a_failing_plugin_fatal(fakes, monkeypatch):
    fakes("good", "raises")
    monkeypatch.setenv("GPERC_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"'fakeraises'.*ImportError.*GPERC_STRICT_PLUGINS=1"):
        get_plugin_manager(allow=["fakegood", "fakeraises"])


def test_module_level_core_range_is_checked_after_import(fakes, gperc_fake_distribution):
    source = "GPERC_CORE_REQUIRES = '>=9'\nfrom gperc_core import hookimpl\n"
    gperc_fake_distribution("gperc-fake-future", "gperc_fake_future", source, plugin_name="fakefuture", requires=())
    pm, caught = load_fakes(allow=["fakefuture"])
    assert pm.get_plugin("fakefuture") is None
    assert "requires gperc-core>=9 (GPERC_CORE_REQUIRES of gperc_fake_future)" in str(caught[0].message)


def test_an_entry_point_module_without_hooks_is_reported(fakes, gperc_fake_distribution):
    gperc_fake_distribution("gperc-fake-empty", "gperc_fake_empty", '"""hooks live elsewhere"""\n',
                            plugin_name="fakeempty")
    pm, caught = load_fakes(allow=["fakeempty"])
    assert pm.get_plugin("fakeempty") is None
    assert "entry point fakeempty = 'gperc_fake_empty' names a module that implements no gperc hook" \
        in str(caught[0].message)


def test_allow_and_block_lists_by_plugin_or_distribution_name(fakes, monkeypatch):
    fakes("good", "raises")
    monkeypatch.setenv("GPERC_PLUGINS", "fakegood")
    pm = get_plugin_manager()
    enabled = {i.name: i.enabled for i in pm.plugins_info() if i.name in ("fakegood", "fakeraises")}
    assert enabled == {"fakegood": True, "fakeraises": False}
    monkeypatch.setenv("GPERC_PLUGINS", "fakegood,fakeraises")
    monkeypatch.setenv("GPERC_DISABLE_PLUGINS", "gperc-fake-raises")
    pm, caught = load_fakes(allow=None)
    assert not caught and pm.get_plugin("fakeraises") is None and pm.get_plugin("fakegood") is not None
    pm, _ = load_fakes(block="fakegood")  # arguments override the environment
    assert pm.get_plugin("fakegood") is None
    args = types.SimpleNamespace(plugin_allow="fakegood", plugin_block=None)
    assert plugin_manager_from_args(args).get_plugin("fakegood") is not None


def test_an_allow_list_naming_no_installed_plugin_warns(fakes):
    fakes("good")
    pm, caught = load_fakes(allow=["fakegood", "fakegod"])
    assert pm.get_plugin("fakegood") is not None
    assert len(caught) == 1 and "names ['fakegod'], which match no installed plugin" in str(caught[0].message)


def test_entry_point_plugins_colliding_on_a_modality(fakes):
    fakes("good", "duplicate")
    pm, _ = load_fakes()
    with pytest.raises(PluginError, match=r"modality 'fakevec' is registered by both plugin 'fakeduplicate' and "
                                          r"plugin 'fakegood'"):
        pm.modality("fakevec")
    pm, _ = load_fakes(block=["fakeduplicate"])
    assert pm.modality("fakevec").plugin == "fakegood"


def test_default_plugin_manager_is_cached_until_reset(fakes):
    first = default_plugin_manager()
    assert default_plugin_manager() is first
    reset_default_plugin_manager()
    assert default_plugin_manager() is not first


@pytest.mark.gperc_plugins(modalities_plugin("marked", "m1"))
def test_gperc_plugin_manager_fixture_is_isolated_and_installed_as_default(gperc_plugin_manager):
    assert list(gperc_plugin_manager.modalities) == ["m1"]
    assert [i.name for i in gperc_plugin_manager.plugins_info()] == ["marked"]
    assert default_plugin_manager() is gperc_plugin_manager


# --------------------------------------------------------------------- the conformance suite
def _load_fake_good() -> types.ModuleType:
    if "gperc_fake_good" in sys.modules:
        return sys.modules["gperc_fake_good"]
    spec = importlib.util.spec_from_file_location("gperc_fake_good", FAKES / "good" / "gperc_fake_good.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["gperc_fake_good"] = module
    return module


FAKE_SAMPLES = {"fakevec": [[0.5, -1.0, 2.0], [1.0], [-2.0, 0.1, 0.2, 0.3]], "faketok": ["hello world", "ab"]}


class TestFakeGoodConformance(PluginConformance):
    """The conformance suite, as a plugin's test module uses it, on the well-behaved fake plugin."""

    plugin = _load_fake_good()

    def make_samples(self, modality):
        return FAKE_SAMPLES[modality]

    def options(self, modality):
        return {"scale": 2.0} if modality == "fakevec" else {}


def test_run_conformance_on_an_installed_plugin_by_name(fakes):
    fakes("good")
    passed = run_conformance("fakegood", FAKE_SAMPLES.__getitem__, modalities=["faketok"])
    assert passed == ["registration", "foreign modality", "faketok: tokenizer", "faketok: input arrays",
                      "faketok: output array", "faketok: collation (sentinels=True)",
                      "faketok: collation (sentinels=False)", "faketok: forward"]
    with pytest.raises(ConformanceError, match="not installed"):
        run_conformance("nosuchplugin", FAKE_SAMPLES.__getitem__)


def _vec_plugin(name: str, **overrides) -> types.ModuleType:
    """A one-modality plugin ('vec', float [m, 2] arrays) with some hooks replaced by broken ones."""
    def input_array(modality, sample, options):
        if modality != "vec":
            return None
        return InputArray(torch.tensor(sample, dtype=torch.float32).unsqueeze(1).repeat(1, 2))
    hooks = dict(gperc_register_modalities=lambda: [ModalitySpec("vec")], gperc_input_array=input_array)
    hooks.update(overrides)
    return make_plugin(name, **hooks)


def _collator_ignoring_masks(modality, options, sentinels):
    if modality != "vec":
        return None
    if sentinels:
        return None  # the core's collator

    def collate(examples):
        return {**Collator()(examples), "attention_mask": None}
    return collate


@pytest.mark.parametrize("overrides, match", [
    (dict(gperc_output_array=lambda modality, options, output_dim: torch.zeros(2, output_dim)),
     r"check 'foreign modality': gperc_output_array must return None"),
    (dict(gperc_input_array=lambda modality, sample, options:
          InputArray(torch.ones(len(sample), 2, dtype=torch.long)) if modality == "vec" else None),
     r"modality 'vec', check 'input array': samples\[0\]: input_type='raw' expects a float"),
    (dict(gperc_collator=_collator_ignoring_masks), r"check 'forward': padding the batch"),
    (dict(gperc_register_modalities=lambda: [ModalitySpec("vec", input_type="pixels")]),
     r"ModalitySpec.input_type: expected 'raw' or 'tokens', got 'pixels'"),
    (dict(gperc_register_tasks=lambda: [{"name": "vec/x", "modalities": ["vec"], "dataset": "nope"}]),
     r"check 'task card': task 'vec/x': dataset\(s\) \['nope'\] are not registered"),
    (dict(gperc_register_tasks=lambda: [{"name": "vec/x", "modalities": ["vec"], "dataset": "d", "epochs": 3}]),
     r"check 'task card': plugin:brokenvec: unknown key 'epochs'"),
])
def test_conformance_catches_a_broken_plugin(overrides, match):
    plugin = _vec_plugin("brokenvec", **overrides)
    with pytest.raises(ConformanceError, match=r"plugin 'brokenvec'.*" + match):
        run_conformance(plugin, lambda modality: [[1.0, 2.0, 3.0], [4.0]])
    assert run_conformance(_vec_plugin("finevec"), lambda modality: [[1.0, 2.0, 3.0], [4.0]])[-1] == "vec: forward"
