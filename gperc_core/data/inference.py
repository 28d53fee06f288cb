"""`PerceiverConfig` inference from a task's data, and the fixed decoder query array of its plugins.

`infer_config` reads the collated training split only (the evaluation split never shapes the
model; a longer evaluation sample is an error naming ``model.input_len``): ``input_len`` / ``input_dim`` /
``input_type`` / ``input_num_tokens`` per modality, ``output_len`` / ``output_dim`` from per-sample
queries, ``n_classes`` from the targets and the datasets, and, for a modality whose arrays declare a
`PositionGrid`, ``input_pos_enc="fourier"`` with ``input_pos_shape`` / ``fourier_num_bands`` /
``fourier_max_resolution`` of that grid (the model computes the features once). The card's
``[model]`` and the overrides win over everything inferred; a contradiction is a `ConfigError`.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.data.cards import TaskCard
from gperc_core.data.datasets import TaskDatasets
from gperc_core.errors import ConfigError, PluginError, TaskError
from gperc_core.model.sentinels import IGNORE_INDEX


def query_array(card: TaskCard, pm: Any, options: Mapping[str, Mapping[str, Any]], config: PerceiverConfig
                ) -> torch.Tensor | None:
    """Return the fixed ``[o, output_dim]`` decoder query array the first modality's plugin gives
    (``gperc_output_array``), or ``None`` (the model's learned queries)."""
    for modality in card.modalities:
        query, plugin = pm.call_firstresult("gperc_output_array", f"task {card.name!r}", modality=modality,
                                            options=options[modality], output_dim=int(config.output_dim))
        if query is not None:
            if not isinstance(query, torch.Tensor) or query.dim() != 2 or query.shape[1] != config.output_dim:
                got = f"shape {tuple(query.shape)}" if isinstance(query, torch.Tensor) else type(query).__name__
                raise PluginError(f"{pm.label(plugin)}: gperc_output_array (modality {modality!r}): expected a "
                                  f"float tensor [o, {config.output_dim}], got {got}")
            return query.float()
    return None


def infer_config(data: TaskDatasets, model: Mapping[str, Any], fusion: Mapping[str, Any]
                 ) -> tuple[PerceiverConfig, torch.Tensor | None]:
    """Return the task's `PerceiverConfig` and its fixed query array (or ``None``).

    ``data`` gives the card, the plugins and the collated splits; ``model`` / ``fusion`` are the
    override sections (the card's ``[model]`` / ``[fusion]`` are read from ``data.card``).
    """
    card = data.card
    # the training split (with its held-out validation part: the dataset's training split): the test
    # split never shapes the model
    splits = [data.collated(name) for name in data.shape_splits()]
    explicit = {**card.model, **model}
    inferred: dict[str, Any] = {}
    per_modality = {m: _infer_modality(data, m, [s[m] for s in splits], explicit) for m in card.modalities}
    outputs = [c["output_array"] for s in splits for c in s.values() if c["output_array"] is not None]
    if outputs:
        inferred["output_len"] = max(o.shape[1] for o in outputs)
        inferred["output_dim"] = int(outputs[0].shape[2])
        _check_explicit(card, explicit, "output_dim", inferred["output_dim"], "the per-sample output arrays")
    targets = [s[card.modalities[0]]["target"] for s in splits]
    if any(t is None for t in targets):
        raise TaskError(f"task {card.name!r}: expected every sample to have a 'target', some have none")
    if card.objective == "dense":
        inferred["decoder_reduction"] = None
        if not outputs:
            inferred["output_len"] = max(t.shape[1] if t.dim() == 2 else 1 for t in targets)
    inferred["n_classes"] = _num_classes(data, targets)
    if card.multimodal:
        from gperc_core.model.fusion import fused_config

        values = {**inferred, **explicit}
        values.setdefault("output_dim", values.get("latent_dim", PerceiverConfig().latent_dim))
        fusion = {**card.fusion, **fusion}
        config = _build(lambda: fused_config(values, per_modality, fusion.get("dim"),
                                             fusion.get("modality_dropout", 0.0),
                                             fusion.get("modality_ensemble", False)))
    else:
        values = {**per_modality[card.modalities[0]], **inferred, **explicit}
        values.setdefault("output_dim", values.get("latent_dim", PerceiverConfig().latent_dim))
        config = _build(lambda: PerceiverConfig(**values))
    query = query_array(card, data.pm, data.options, config)
    if query is not None and "output_len" not in explicit:
        config = config.replace(output_len=int(query.shape[0]))
    return config, query


def _build(make: Any) -> PerceiverConfig:
    try:
        return make()
    except ConfigError as exc:
        raise ConfigError(f"model: {exc}") from exc


def _infer_modality(data: TaskDatasets, modality: str, collated: list[Mapping[str, Any]],
                    explicit: Mapping[str, Any]) -> dict[str, Any]:
    card = data.card
    arrays = [c["input_array"] for c in collated]
    tokens = arrays[0].dim() == 2
    length = max(a.shape[1] for a in arrays)
    out: dict[str, Any] = {"input_len": length, "input_type": "tokens" if tokens else "raw"}
    if tokens:
        tokenizer = data.tokenizers.get(modality)
        out["input_num_tokens"] = int(tokenizer.vocab_size) if tokenizer is not None else \
            int(max(int(a.max()) for a in arrays)) + 1
        out["input_dim"] = int(explicit.get("latent_dim", PerceiverConfig().latent_dim))
    else:
        out["input_dim"] = int(arrays[0].shape[2])
        grid = collated[0].get("position")
        if grid is not None:
            if card.multimodal or explicit.get("input_pos_enc", "fourier") != "fourier":
                out["input_dim"] += grid.channels  # the data path appends them (see gperc_core.data.datasets)
            else:
                out.update(input_pos_enc="fourier", input_pos_shape=list(grid.shape),
                           fourier_num_bands=int(grid.num_bands),
                           fourier_max_resolution=list(grid.max_resolution) if grid.max_resolution else None)
        if not card.multimodal:
            _check_explicit(card, explicit, "input_dim", out["input_dim"], f"the {modality} input arrays")
    if not card.multimodal and "input_len" in explicit and explicit["input_len"] < length:
        raise ConfigError(f"model.input_len: expected at least {length} (the longest {modality} sample), "
                          f"got {explicit['input_len']}")
    return out


def _check_explicit(card: TaskCard, explicit: Mapping[str, Any], key: str, actual: int, what: str) -> None:
    if key in explicit and explicit[key] != actual:
        raise ConfigError(f"model.{key}: expected {actual} ({what} of task {card.name!r} have {actual}), "
                          f"got {explicit[key]!r}")


def _num_classes(data: TaskDatasets, targets: list[torch.Tensor]) -> int:
    card = data.card
    declared = [n for n in (data.pm.dataset(d).num_classes for d in card.datasets()) if n]
    largest = max(int(t[t != IGNORE_INDEX].max()) if (t != IGNORE_INDEX).any() else 0 for t in targets) + 1
    tokenizer = data.tokenizers.get(card.modalities[0])
    if card.objective == "dense" and tokenizer is not None:
        largest = max(largest, int(tokenizer.vocab_size))
    return max([largest, *declared])


__all__ = ["infer_config", "query_array"]
