"""The plugin conformance suite: checks that any gperc plugin keeps the hook contract.

`run_conformance(plugin, make_samples)` runs every check on a plugin (an installed plugin's
entry-point name, or a plugin module) and returns the list of checks that passed; a broken
contract raises `ConformanceError` (an ``AssertionError``) naming the plugin, the modality and the
check. `gperc_core.testing.PluginConformance` wraps the same checks as pytest tests.

The plugin supplies the samples, so no real dataset is needed: ``make_samples(modality)`` returns
a few raw samples of ``modality`` (ideally of different sizes), ``options(modality)`` the
per-modality task options its hooks read.

Checks, per plugin: it loads without error; every modality, dataset and task card its hooks return
leaves ``plugin`` unset or names the plugin itself (read from the hooks' raw return values, since the
manager re-stamps what it collects) and is held by the manager stamped with its name; its task cards pass the registry schema and name registered datasets. Per modality it registers: its per-modality hooks return ``None`` for a
modality that is not theirs; the tokenizer (if any) has a positive ``vocab_size`` and encodes to
ids inside it; every sample becomes an `InputArray` of the declared kind (float ``[m, c]`` with one
``c`` for ``input_type="raw"``, integer ids ``[m]`` below the vocabulary size for ``"tokens"``), with
a bool ``[m]`` mask and a float ``[o, e]`` output array if any; the fixed output array (if any) is
``[o, output_dim]``; collation with and without sentinels gives tensors of the right shapes, each
sample's array at the start of its row and a bool mask True exactly on its real elements; and a
small `Perceiver` sized from the batch gives finite logits, the same with extra padding.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

import torch

from gperc_core.data.collate import Collator
from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.model.perceiver import Perceiver
from gperc_core.plugins.manager import PluginManager, PluginWarning, get_plugin_manager
from gperc_core.model.sentinels import is_mask_sentinel, is_output_sentinel
from gperc_core.plugins.specs import InputArray, ModalitySpec, Tokenizer

__all__ = ["ConformanceError", "run_conformance", "conformance_manager", "check_registration", "check_stamps",
           "check_task_card",
           "check_foreign_modality",
           "check_tokenizer", "check_input_arrays", "check_output_array", "check_collation", "check_forward",
           "FOREIGN_MODALITY", "OUTPUT_DIM"]

FOREIGN_MODALITY = "gperc-conformance-no-such-modality"
"""A modality name no plugin owns: every per-modality hook must answer ``None`` for it."""

OUTPUT_DIM = 8
"""``output_dim`` the checks ask fixed output arrays for when samples carry no output array."""


class ConformanceError(AssertionError):
    """A plugin broke the hook contract; the message names the plugin, the modality and the check."""


def _fail(plugin: str, modality: str | None, check: str, message: str) -> ConformanceError:
    where = f"plugin {plugin!r}" + (f", modality {modality!r}" if modality else "")
    return ConformanceError(f"{where}, check {check!r}: {message}")


def conformance_manager(plugin: str | ModuleType | object) -> tuple[PluginManager, str]:
    """Return an isolated, strict manager holding only ``plugin`` and the name it is registered under.

    ``plugin`` is an installed plugin's entry-point name or a plugin module / object.
    """
    if isinstance(plugin, str):
        with warnings.catch_warnings():  # strict: a failing plugin raises; a missing one is reported below
            warnings.simplefilter("ignore", PluginWarning)
            pm = get_plugin_manager(allow=[plugin], block=[], strict=True)
        if pm.get_plugin(plugin) is None:
            found = [info.name for info in pm.plugins_info()]
            raise ConformanceError(f"plugin {plugin!r}: not installed (entry points found in group 'gperc': "
                                   f"{', '.join(found) or 'none'})")
        return pm, plugin
    pm = get_plugin_manager(entry_points=False, strict=True, plugins=[plugin])
    return pm, pm.get_name(plugin)


# --------------------------------------------------------------------- registration
def check_registration(pm: PluginManager, plugin: str) -> list[ModalitySpec]:
    """Check the plugin loaded and stamped what it registered; return its modalities."""
    infos = {info.name: info for info in pm.plugins_info()}
    info = infos.get(plugin)
    if info is None or info.error:
        raise _fail(plugin, None, "load", info.error if info else "not registered")
    modalities = [m for m in pm.modalities.values() if m.plugin == plugin]
    for spec in pm.modalities.values():
        if spec.input_type not in ("raw", "tokens"):
            raise _fail(plugin, spec.name, "registration",
                        f"ModalitySpec.input_type: expected 'raw' or 'tokens', got {spec.input_type!r}")
    check_stamps(pm, plugin)
    for kind, items in (("modalities", pm.modalities.values()), ("datasets", pm.datasets.values())):
        for item in items:
            if item.plugin != plugin:
                raise _fail(plugin, None, "stamping", f"{kind} {item.name!r} is stamped {item.plugin!r}")
    for dataset in pm.datasets.values():
        if not callable(dataset.load) or isinstance(dataset.modalities, str) or not dataset.modalities:
            raise _fail(plugin, None, "registration", f"dataset {dataset.name!r}: expected a callable load and a "
                        f"non-empty list of modalities, got load={dataset.load!r}, modalities={dataset.modalities!r}")
    for card in pm.task_cards:
        if card.get("plugin") != plugin:
            raise _fail(plugin, None, "stamping", f"task {card.get('name')!r} is stamped {card.get('plugin')!r}")
        check_task_card(pm, plugin, card)
    return modalities


_REGISTRATION_HOOKS = (("gperc_register_modalities", "modality"), ("gperc_register_datasets", "dataset"),
                       ("gperc_register_tasks", "task"))


def check_stamps(pm: PluginManager, plugin: str) -> None:
    """Check what the plugin's registration hooks themselves return: an item may leave ``plugin``
    unset (the manager stamps it) or set it to the plugin's own name, never to another name, and the
    manager must hold every item stamped with this plugin.

    The manager overwrites ``plugin`` when it collects, so this reads the hooks' raw return values.
    """
    collected = {"modality": pm.modalities, "dataset": pm.datasets,
                 "task": {card["name"]: card for card in pm.task_cards}}
    for hook_name, kind in _REGISTRATION_HOOKS:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name != plugin:
                continue
            for item in impl.function() or ():
                name = item.get("name") if isinstance(item, Mapping) else getattr(item, "name", None)
                claimed = item.get("plugin") if isinstance(item, Mapping) else getattr(item, "plugin", None)
                if claimed is not None and claimed != plugin:
                    raise _fail(plugin, None, "stamping", f"{kind} {name!r} is stamped {claimed!r} by the plugin "
                                f"itself; leave 'plugin' unset or set it to {plugin!r}")
                held = collected[kind].get(name)
                owner = None if held is None else (held.get("plugin") if isinstance(held, Mapping) else held.plugin)
                if owner != plugin:
                    raise _fail(plugin, None, "stamping", f"{kind} {name!r} is registered by the plugin but the "
                                f"manager holds it stamped {owner!r}")


def check_task_card(pm: PluginManager, plugin: str, card: Mapping[str, Any]) -> None:
    """Check a plugin's task card against the registry schema, and that its own modalities and dataset exist."""
    from gperc_core.errors import TaskError
    from gperc_core.data.registry import validate_card

    try:
        validated = validate_card(card, f"plugin:{plugin}")
    except TaskError as exc:
        raise _fail(plugin, None, "task card", str(exc)) from exc
    own = {m.name for m in pm.modalities.values() if m.plugin == plugin}
    if set(validated.modalities) <= own:  # a task only of this plugin's modalities needs nothing else
        missing = sorted({validated.dataset_for(m) for m in validated.modalities} - set(pm.datasets))
        if missing:
            raise _fail(plugin, None, "task card", f"task {validated.name!r}: dataset(s) {missing} are not "
                        f"registered (registered: {sorted(pm.datasets)})")


def check_foreign_modality(pm: PluginManager, plugin: str) -> None:
    """Check every per-modality hook answers ``None`` for a modality the plugin does not own."""
    calls = {
        "gperc_tokenizer": dict(options={}, corpus=None),
        "gperc_input_array": dict(sample=None, options={}, tokenizer=None),
        "gperc_output_array": dict(options={}, output_dim=OUTPUT_DIM),
        "gperc_collator": dict(options={}, sentinels=False, tokenizer=None),
    }
    for hook, kwargs in calls.items():
        result = getattr(pm.hook, hook)(modality=FOREIGN_MODALITY, **kwargs)
        if result is not None:
            raise _fail(plugin, FOREIGN_MODALITY, "foreign modality",
                        f"{hook} must return None for a modality that is not the plugin's, got {type(result).__name__}")


# --------------------------------------------------------------------- per modality
def check_tokenizer(pm: PluginManager, plugin: str, modality: str, samples: Sequence[Any],
                    options: dict[str, Any]) -> Tokenizer | None:
    """Build the modality's tokenizer (if any) on ``samples`` and check it; returns it (the hooks get it as
    their ``tokenizer`` argument, never inside ``options``)."""
    tokenizer = pm.hook.gperc_tokenizer(modality=modality, options=dict(options), corpus=list(samples))
    if tokenizer is None:
        return None
    vocab = getattr(tokenizer, "vocab_size", None)
    if not isinstance(tokenizer, Tokenizer) or not isinstance(vocab, int) or vocab <= 0:
        raise _fail(plugin, modality, "tokenizer", f"expected encode/decode and a positive int vocab_size, "
                    f"got {type(tokenizer).__name__} with vocab_size={vocab!r}")
    for sample in samples:
        if isinstance(sample, str):
            ids = tokenizer.encode(sample)
            if not all(isinstance(i, int) and 0 <= i < vocab for i in ids):
                raise _fail(plugin, modality, "tokenizer", f"encode({sample[:40]!r}) gave ids outside [0, {vocab}): "
                            f"{ids[:16]}")
            if not isinstance(tokenizer.decode(ids), str):
                raise _fail(plugin, modality, "tokenizer", "decode(ids) must return a str")
    return tokenizer


def check_input_arrays(pm: PluginManager, plugin: str, spec: ModalitySpec, samples: Sequence[Any],
                       options: dict[str, Any], tokenizer: Tokenizer | None) -> list[InputArray]:
    """Turn each sample into an `InputArray` and check its kind, shape and dtype against ``spec``."""
    arrays: list[InputArray] = []
    modality = spec.name
    for i, sample in enumerate(samples):
        result = pm.hook.gperc_input_array(modality=modality, sample=sample, options=options, tokenizer=tokenizer)
        if not isinstance(result, InputArray):
            raise _fail(plugin, modality, "input array", f"samples[{i}]: expected an InputArray, got "
                        f"{type(result).__name__}")
        a = result.array
        if not isinstance(a, torch.Tensor) or a.shape[0:1] == (0,):
            raise _fail(plugin, modality, "input array", f"samples[{i}]: expected a non-empty tensor, got {a!r}")
        if spec.input_type == "tokens":
            if a.dim() != 1 or a.dtype.is_floating_point or a.dtype == torch.bool:
                raise _fail(plugin, modality, "input array", f"samples[{i}]: input_type='tokens' expects integer "
                            f"ids [m], got shape {tuple(a.shape)} dtype {a.dtype}")
            if int(a.min()) < 0 or (tokenizer is not None and int(a.max()) >= tokenizer.vocab_size):
                raise _fail(plugin, modality, "input array", f"samples[{i}]: token ids must lie in [0, vocab_size), "
                            f"got [{int(a.min())}, {int(a.max())}]")
        else:
            if a.dim() != 2 or not a.dtype.is_floating_point:
                raise _fail(plugin, modality, "input array", f"samples[{i}]: input_type='raw' expects a float "
                            f"[m, c] array, got shape {tuple(a.shape)} dtype {a.dtype}")
            if arrays and a.shape[1] != arrays[0].array.shape[1]:
                raise _fail(plugin, modality, "input array", f"samples[{i}]: channel count {a.shape[1]} differs "
                            f"from samples[0]'s {arrays[0].array.shape[1]}")
            if not bool(torch.isfinite(a).all()):
                raise _fail(plugin, modality, "input array", f"samples[{i}]: the array has NaN or inf values")
        if result.mask is not None and (result.mask.dtype != torch.bool or tuple(result.mask.shape) != (a.shape[0],)):
            raise _fail(plugin, modality, "input array", f"samples[{i}]: mask must be bool [{a.shape[0]}], got "
                        f"shape {tuple(result.mask.shape)} dtype {result.mask.dtype}")
        out = result.output
        if out is not None and (not isinstance(out, torch.Tensor) or out.dim() != 2 or not out.dtype.is_floating_point):
            raise _fail(plugin, modality, "input array", f"samples[{i}]: output must be a float [o, e] array, got "
                        f"{getattr(out, 'shape', out)!r}")
        arrays.append(result)
    if not arrays:
        raise _fail(plugin, modality, "samples", "make_samples returned no samples")
    return arrays


def check_output_array(pm: PluginManager, plugin: str, modality: str, options: dict[str, Any]) -> torch.Tensor | None:
    """Check the fixed decoder query array (if the plugin gives one) is float ``[o, OUTPUT_DIM]``."""
    out = pm.hook.gperc_output_array(modality=modality, options=options, output_dim=OUTPUT_DIM)
    if out is None:
        return None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != OUTPUT_DIM \
            or not out.dtype.is_floating_point:
        raise _fail(plugin, modality, "output array", f"expected a float [o, {OUTPUT_DIM}] tensor, got "
                    f"{getattr(out, 'shape', out)!r}")
    return out


def check_collation(pm: PluginManager, plugin: str, modality: str, arrays: Sequence[InputArray],
                    options: dict[str, Any], sentinels: bool, tokenizer: Tokenizer | None = None) -> dict[str, Any]:
    """Collate ``arrays`` with the plugin's collator (or the core's) and check the batch's shapes."""
    collator: Callable = pm.hook.gperc_collator(modality=modality, options=options, sentinels=sentinels,
                                                tokenizer=tokenizer) \
        or Collator(sentinels=sentinels)
    batch = collator(list(arrays))
    b = len(arrays)
    check = f"collation (sentinels={sentinels})"
    if not isinstance(batch, Mapping) or "input_array" not in batch:
        raise _fail(plugin, modality, check, f"expected a dict with 'input_array', got {type(batch).__name__}")
    x = batch["input_array"]
    if not isinstance(x, torch.Tensor) or x.shape[0] != b or x.dim() not in (2, 3):
        raise _fail(plugin, modality, check, f"input_array: expected [{b}, m(, c)], got {getattr(x, 'shape', x)!r}")
    m = x.shape[1]
    if m < max(a.array.shape[0] for a in arrays):
        raise _fail(plugin, modality, check, f"input_array: {m} elements, fewer than the longest sample")
    mask = batch.get("attention_mask")
    if mask is None:
        if sentinels:
            raise _fail(plugin, modality, check, "attention_mask: expected a tensor or the mask sentinel, got None")
    elif not (is_mask_sentinel(mask) and mask.shape == (b,)) and tuple(mask.shape) != (b, m):
        raise _fail(plugin, modality, check, f"attention_mask: expected [{b}, {m}] or the [{b}] sentinel, got "
                    f"{tuple(mask.shape)}")
    _check_batch_content(plugin, modality, check, arrays, x, mask)
    out = batch.get("output_array")
    if out is None:
        if sentinels:
            raise _fail(plugin, modality, check, "output_array: expected a tensor or the output sentinel, got None")
    elif not (is_output_sentinel(out) and out.shape == (b,)) and (out.dim() != 3 or out.shape[0] != b):
        raise _fail(plugin, modality, check, f"output_array: expected [{b}, o, e] or the [{b}] sentinel, got "
                    f"{tuple(out.shape)}")
    return dict(batch)


def _check_batch_content(plugin: str, modality: str, check: str, arrays: Sequence[InputArray], x: torch.Tensor,
                         mask: torch.Tensor | None) -> None:
    """Check each sample's array sits at the start of its row and the mask marks exactly its real elements."""
    real_mask = mask is not None and not is_mask_sentinel(mask)
    if real_mask and mask.dtype != torch.bool:
        raise _fail(plugin, modality, check, f"attention_mask: expected a bool tensor, got {mask.dtype}")
    for i, a in enumerate(arrays):
        n = a.array.shape[0]
        if not torch.equal(x[i, :n].to(a.array.dtype), a.array):
            raise _fail(plugin, modality, check, f"input_array[{i}, :{n}]: expected sample {i}'s array, got other values")
        expected = a.mask if a.mask is not None else torch.ones(n, dtype=torch.bool)
        if real_mask and (not torch.equal(mask[i, :n], expected) or bool(mask[i, n:].any())):
            raise _fail(plugin, modality, check, f"attention_mask[{i}]: expected True on the sample's {n} real "
                        f"elements (its own mask where it has one) and False on the padding")


def _small_config(batch: Mapping[str, Any], fixed_output: torch.Tensor | None, tokenizer: Tokenizer | None,
                  input_len: int) -> PerceiverConfig:
    x = batch["input_array"]
    out = batch.get("output_array")
    if isinstance(out, torch.Tensor) and out.dim() == 3:
        output_dim, output_len = int(out.shape[2]), int(out.shape[1])
    elif fixed_output is not None:
        output_dim, output_len = int(fixed_output.shape[1]), int(fixed_output.shape[0])
    else:
        output_dim, output_len = OUTPUT_DIM, 1
    heads = 2 if output_dim % 2 == 0 else 1
    common = dict(input_len=input_len, latent_len=4, latent_dim=16, output_len=output_len, output_dim=output_dim,
                  ffw_latent=16, ffw_output=16, num_heads=heads, num_layers=1, n_classes=3, dropout=0.0,
                  decoder_reduction="mean")
    if x.dim() == 2:
        vocab = tokenizer.vocab_size if tokenizer is not None else int(x.max()) + 1
        return PerceiverConfig(input_type="tokens", input_num_tokens=max(vocab, 1), input_dim=8, **common)
    return PerceiverConfig(input_dim=int(x.shape[2]), **common)


def check_forward(plugin: str, modality: str, arrays: Sequence[InputArray], batch: Mapping[str, Any],
                  fixed_output: torch.Tensor | None, tokenizer: Tokenizer | None,
                  sentinel_batch: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Run a small `Perceiver` on ``batch``, on its sentinel form and on the samples padded further;
    return the logits.

    The logits must be finite ``[b, 3]``, and neither sentinels nor padding masked out may change them.
    """
    m = batch["input_array"].shape[1]
    config = _small_config(batch, fixed_output, tokenizer, input_len=m + 3)
    model = Perceiver(config).eval()
    output_array = batch.get("output_array")
    b = len(arrays)
    if fixed_output is not None and not (isinstance(output_array, torch.Tensor) and output_array.dim() == 3):
        output_array = fixed_output.unsqueeze(0).expand(b, -1, -1)
    with torch.no_grad():
        logits = model(batch["input_array"], batch.get("attention_mask"), output_array)
        padded = Collator(pad_to=m + 3)(list(arrays))
        padded_logits = model(padded["input_array"], padded["attention_mask"], output_array)
        sentinel_logits = None
        if sentinel_batch is not None:
            sentinel_output = sentinel_batch.get("output_array")
            if fixed_output is not None and not (isinstance(sentinel_output, torch.Tensor) and sentinel_output.dim() == 3):
                sentinel_output = output_array
            sentinel_logits = model(sentinel_batch["input_array"], sentinel_batch.get("attention_mask"),
                                    sentinel_output)
    if tuple(logits.shape) != (b, 3) or not bool(torch.isfinite(logits).all()):
        raise _fail(plugin, modality, "forward", f"expected finite logits [{b}, 3], got {tuple(logits.shape)} "
                    f"(finite: {bool(torch.isfinite(logits).all())})")
    if not torch.allclose(logits, padded_logits, atol=1e-4, rtol=1e-4):
        diff = float((logits - padded_logits).abs().max())
        raise _fail(plugin, modality, "forward", f"padding the batch to {m + 3} changed the logits by {diff:.3g}: "
                    f"the attention mask does not cover the padding")
    if sentinel_logits is not None and not torch.allclose(logits, sentinel_logits, atol=1e-4, rtol=1e-4):
        raise _fail(plugin, modality, "forward", "the batch collated with sentinels=True gives other logits than "
                    "the one collated with sentinels=False")
    return logits


# --------------------------------------------------------------------- the whole suite
def run_conformance(plugin: str | ModuleType | object, make_samples: Callable[[str], Sequence[Any]],
                    options: Callable[[str], Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | None = None,
                    modalities: Sequence[str] | None = None) -> list[str]:
    """Run every conformance check on ``plugin``; return the names of the checks that passed.

    ``make_samples(modality)`` returns a few raw samples; ``options`` maps a modality to its task
    options (a callable or a dict); ``modalities`` limits the per-modality checks (default: every
    modality the plugin registers). Raises `ConformanceError` at the first broken check.
    """
    pm, name = conformance_manager(plugin)
    passed = []
    specs = check_registration(pm, name)
    passed.append("registration")
    check_foreign_modality(pm, name)
    passed.append("foreign modality")
    chosen = {s.name: s for s in specs}
    if modalities is not None:
        unknown = [m for m in modalities if m not in chosen]
        if unknown:
            raise _fail(name, None, "modalities", f"{unknown} are not registered by the plugin "
                        f"(it registers {sorted(chosen)})")
        chosen = {m: chosen[m] for m in modalities}
    for modality, spec in chosen.items():
        passed.extend(f"{modality}: {check}" for check in check_modality(pm, name, spec, make_samples, options))
    return passed


def check_modality(pm: PluginManager, plugin: str, spec: ModalitySpec, make_samples: Callable[[str], Sequence[Any]],
                   options: Callable[[str], Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """Run the per-modality checks on ``spec``; return their names."""
    modality = spec.name
    samples = list(make_samples(modality))
    if len(samples) < 2:
        raise _fail(plugin, modality, "samples", f"make_samples must return at least 2 samples, got {len(samples)}")
    opts = _options_for(options, modality)
    tokenizer = check_tokenizer(pm, plugin, modality, samples, opts)
    arrays = check_input_arrays(pm, plugin, spec, samples, opts, tokenizer)
    fixed = check_output_array(pm, plugin, modality, opts)
    sentinel_batch = check_collation(pm, plugin, modality, arrays, opts, sentinels=True, tokenizer=tokenizer)
    batch = check_collation(pm, plugin, modality, arrays, opts, sentinels=False, tokenizer=tokenizer)
    check_forward(plugin, modality, arrays, batch, fixed, tokenizer, sentinel_batch)
    return ["tokenizer", "input arrays", "output array", "collation (sentinels=True)",
            "collation (sentinels=False)", "forward"]


def _options_for(options: Any, modality: str) -> dict[str, Any]:
    if options is None:
        return {}
    value = options(modality) if callable(options) else options.get(modality, {})
    return dict(value or {})
