"""The conformance kit's own checks can fail: plugins that break the stamping or the collation
contract are caught (the manager re-stamps what it collects, so the kit reads the hooks' raw returns)."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch

from gperc_core import DatasetSpec, InputArray, ModalitySpec, hookimpl
from gperc_core.data.collate import Collator
from gperc_core.testing.conformance import ConformanceError, run_conformance

SAMPLES = [[1.0, 2.0, 3.0], [4.0]]


def _plugin(name: str, **hooks) -> types.ModuleType:
    """A one-modality plugin ('vec', float [m, 2] arrays) whose hooks ``hooks`` replace the defaults."""
    def input_array(modality, sample, options):
        if modality != "vec":
            return None
        return InputArray(torch.tensor(sample, dtype=torch.float32).unsqueeze(1).repeat(1, 2))
    module = types.ModuleType(name)
    defaults = dict(gperc_register_modalities=lambda: [ModalitySpec("vec")], gperc_input_array=input_array)
    for hook_name, function in {**defaults, **hooks}.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def _collator(transform):
    def hook(modality, options, sentinels):
        if modality != "vec":
            return None

        def collate(examples):
            return transform(Collator(sentinels=sentinels)(examples))
        return collate
    return hook


def _load(split, options):
    return [{"vec": [1.0], "target": 0}]


@pytest.mark.parametrize("hooks, match", [
    (dict(gperc_register_modalities=lambda: [ModalitySpec("vec", plugin="image")]),
     "check 'stamping': modality 'vec' is stamped 'image' by the plugin itself"),
    (dict(gperc_register_datasets=lambda: [DatasetSpec("d", ["vec"], _load, plugin="other")]),
     "check 'stamping': dataset 'd' is stamped 'other'"),
    (dict(gperc_register_tasks=lambda: [{"name": "vec/x", "modalities": ["vec"], "dataset": "d", "plugin": "x"}],
          gperc_register_datasets=lambda: [DatasetSpec("d", ["vec"], _load)]),
     "check 'stamping': task 'vec/x' is stamped 'x'"),
    (dict(gperc_collator=_collator(lambda b: {**b, "input_array": b["input_array"].flip(1)})),
     r"check 'collation \(sentinels=True\)': input_array\[0, :3\]: expected sample 0's array"),
    (dict(gperc_collator=_collator(lambda b: {**b, "attention_mask": torch.ones_like(b["attention_mask"])})),
     r"attention_mask\[1\]: expected True on the sample's 1 real elements .* and False on the padding"),
    (dict(gperc_collator=_collator(lambda b: {**b, "attention_mask": b["attention_mask"].float()})),
     "attention_mask: expected a bool tensor, got torch.float32"),
])
def test_the_kit_fails_a_plugin_that_breaks_the_contract(hooks, match):
    with pytest.raises(ConformanceError, match=r"plugin 'wrongvec'.*" + match):
        run_conformance(_plugin("wrongvec", **hooks), lambda modality: SAMPLES)


def test_the_kit_passes_a_plugin_that_stamps_its_own_name_or_none():
    good = _plugin("goodvec", gperc_register_modalities=lambda: [ModalitySpec("vec", plugin="goodvec")],
                   gperc_register_datasets=lambda: [DatasetSpec("d", ["vec"], _load)],
                   gperc_collator=_collator(lambda b: b))
    assert run_conformance(good, lambda modality: SAMPLES)[-1] == "vec: forward"


def test_the_pytest_plugin_imports_no_torch():
    code = "import sys, gperc_core.testing; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
