"""Multimodal fusion in the core: several modalities' input arrays into one Perceiver input.

Each modality's array is brought to one channel width ``d`` by its own learned projection (a
linear layer for raw ``[b, m_i, c_i]`` arrays, an embedding for token ids ``[b, m_i]``), a learned
modality embedding ``[d]`` is added to every element of that modality, and the arrays are
concatenated along the input axis (``m = sum m_i``) with their masks (an absent mask counts as
all-real). In training, ``modality_dropout`` hides each modality of a sample (masks it out) with
its probability (one number, or a table modality -> probability), never all of a sample's
modalities, so that no modality can carry the task alone while the others go unlearned (without
it, av-digits learned the easy training voices and ignored the images). The Perceiver then reads
the fused ``[b, m, d]`` array like any other; its trainable position encoding covers the
concatenated axis, so each modality keeps its own positions.

`ModalityFusion` is that model: it owns the projections, the modality embeddings and a
`Perceiver`. Its `PerceiverConfig` carries the extra field ``fusion`` (modality -> ``input_len``,
``input_dim``, ``input_type``, ``input_num_tokens``), so it saves and loads with the same safe
checkpoint format (``config.json`` + ``model.safetensors``) as a plain Perceiver.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import ConfigError, InputError, describe
from gperc_core.model.perceiver import Perceiver, build_unit, unit_prefix

_SPEC_KEYS = ("input_len", "input_dim", "input_type", "input_num_tokens")
FUSION_KEYS = ("dim", "modality_dropout", "modality_ensemble")
"""The settings of a task card's ``[fusion]`` table (and of ``fusion.<key>`` overrides)."""


def fusion_spec(config: PerceiverConfig) -> dict[str, dict[str, Any]]:
    """Return and check the ``fusion`` field of ``config``: modality -> its input description."""
    spec = config.get("fusion")
    if not isinstance(spec, Mapping) or len(spec) < 1:
        raise ConfigError(f"fusion: expected a table modality -> {{{', '.join(_SPEC_KEYS)}}}, got {spec!r}")
    total = 0
    for modality, entry in spec.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"fusion.{modality}: expected a table with {_SPEC_KEYS}, got {entry!r}")
        for key in ("input_len", "input_dim"):
            if not isinstance(entry.get(key), int) or entry[key] <= 0:
                raise ConfigError(f"fusion.{modality}.{key}: expected a positive integer, got {entry.get(key)!r}")
        if entry.get("input_type", "raw") not in ("raw", "tokens"):
            raise ConfigError(f"fusion.{modality}.input_type: expected 'raw' or 'tokens', got {entry.get('input_type')!r}")
        if entry.get("input_type") == "tokens" and not (isinstance(entry.get("input_num_tokens"), int)
                                                         and entry["input_num_tokens"] > 0):
            raise ConfigError(f"fusion.{modality}.input_num_tokens: expected a positive integer for a token "
                              f"modality, got {entry.get('input_num_tokens')!r}")
        total += entry["input_len"]
    if config.input_len != total:
        raise ConfigError(f"input_len: expected the sum of the fused modalities' input_len ({total}), "
                          f"got {config.input_len}")
    dropout = config.get("modality_dropout", 0.0)
    values = dropout.items() if isinstance(dropout, Mapping) else [("", dropout)]
    for modality, p in values:
        if modality and modality not in spec:
            raise ConfigError(f"modality_dropout.{modality}: expected one of the fused modalities {list(spec)}")
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p < 1.0:
            raise ConfigError(f"modality_dropout: expected a number in [0, 1) or a table modality -> number, "
                              f"got {dropout!r}")
    if config.input_type != "raw":
        raise ConfigError(f"input_type: expected 'raw' for a fused model (modalities are projected first), "
                          f"got {config.input_type!r}")
    return {m: dict(e) for m, e in spec.items()}


def fused_config(base: PerceiverConfig | Mapping[str, Any], modalities: Mapping[str, Mapping[str, Any]],
                 dim: int | None = None, modality_dropout: float | Mapping[str, float] = 0.0,
                 modality_ensemble: bool = False) -> PerceiverConfig:
    """Return the config of a `ModalityFusion` over ``modalities`` (modality -> input description):
    ``input_dim`` = ``dim`` (default ``latent_dim``), ``input_len`` = the sum, ``input_type`` raw,
    ``modality_dropout`` (the probability that training hides a modality of a sample: one number for
    every modality, or a table modality -> probability) and ``modality_ensemble`` (evaluation averages
    the log-probabilities given all modalities and given each one alone)."""
    values = base.to_dict() if isinstance(base, PerceiverConfig) else dict(base)
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
        raise ConfigError(f"fusion.dim: expected a positive integer, got {dim!r}")
    width = int(dim or values.get("latent_dim", PerceiverConfig().latent_dim))
    spec = {m: {k: e.get(k) for k in _SPEC_KEYS} for m, e in modalities.items()}
    values.update(fusion=spec, input_dim=width, input_len=sum(int(e["input_len"]) for e in spec.values()),
                  input_type="raw", input_num_tokens=None, input_pos_shape=None,
                  modality_dropout=dict(modality_dropout) if isinstance(modality_dropout, Mapping) else modality_dropout,
                  modality_ensemble=modality_ensemble)
    if values.get("input_pos_enc") == "fourier":
        values["input_pos_enc"] = "trainable"
    return PerceiverConfig(**values)


class ModalityFusion(nn.Module):
    """A multimodal Perceiver: per-modality projections + modality embeddings + concatenation + `Perceiver`.

    ``forward(input_array, attention_mask=None, output_array=None, return_attentions=False)`` takes
    ``input_array`` as a dict modality -> ``[b, m_i, c_i]`` (or ``[b, m_i]`` token ids) and
    ``attention_mask`` as ``None`` or a dict modality -> ``[b, m_i]`` bool mask or ``None``; it
    returns what `Perceiver.forward` returns.
    """

    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__()
        if not isinstance(config, PerceiverConfig):
            raise ConfigError(f"config: expected a PerceiverConfig, got {type(config).__name__}")
        self.config = config
        self.spec = fusion_spec(config)
        self.modalities = list(self.spec)
        width = int(config.input_dim)
        with build_unit(config.seed, "projections"):
            self.projections = nn.ModuleDict({
                m: (nn.Embedding(e["input_num_tokens"], width) if e.get("input_type") == "tokens"
                    else nn.Linear(e["input_dim"], width))
                for m, e in self.spec.items()})
        with build_unit(config.seed, "modality_embedding"):
            self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), width) * config.pos_init_std)
        with unit_prefix("perceiver."):
            self.perceiver = Perceiver(config)
        self.ensemble = bool(config.get("modality_ensemble", False))
        """Whether evaluation runs the modality ensemble (``modality_ensemble``; off in a pipeline stage)."""

    def fuse(self, input_array: Mapping[str, torch.Tensor],
             attention_mask: Mapping[str, torch.Tensor | None] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the fused ``[b, sum m_i, d]`` array and its ``[b, sum m_i]`` mask (``None`` if no modality has one)."""
        self._check(input_array, attention_mask)
        masks = dict(attention_mask or {})
        parts, mask_parts = [], []
        first = input_array[self.modalities[0]]
        keep = self._modality_keep(first.shape[0], first.device)
        any_mask = keep is not None or any(masks.get(m) is not None for m in self.modalities)
        for k, modality in enumerate(self.modalities):
            x = input_array[modality]
            projection = self.projections[modality]
            if isinstance(projection, nn.Linear):
                x = x.to(projection.weight.dtype)
            parts.append(projection(x) + self.modality_embedding[k])
            if any_mask:
                mask = masks.get(modality)
                mask = mask.bool() if mask is not None else torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
                mask_parts.append(mask if keep is None else mask & keep[:, k:k + 1])
        fused = torch.cat(parts, dim=1)
        return fused, (torch.cat(mask_parts, dim=1) if any_mask else None)

    def _modality_keep(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """In training with ``modality_dropout``: a ``[batch, K]`` bool of the modalities each sample
        keeps (each hidden with its probability; where all would be, one random modality is kept);
        otherwise ``None``."""
        dropout = self.config.get("modality_dropout", 0.0) or 0.0
        probs = [float(dropout.get(m, 0.0)) if isinstance(dropout, Mapping) else float(dropout)
                 for m in self.modalities]
        k = len(self.modalities)
        if not self.training or max(probs) <= 0.0 or k < 2:
            return None
        hidden = torch.rand(batch, k, device=device) < torch.tensor(probs, device=device)
        rescue = torch.nn.functional.one_hot(torch.randint(0, k, (batch,), device=device), k).bool()
        hidden &= ~(rescue & hidden.all(dim=1, keepdim=True))
        return ~hidden

    def _check(self, input_array: Any, attention_mask: Any) -> None:
        if torch.compiler.is_compiling():
            return
        if not isinstance(input_array, Mapping) or set(input_array) != set(self.modalities):
            got = sorted(input_array) if isinstance(input_array, Mapping) else describe(input_array)
            raise InputError(f"input_array: expected a dict with one array per modality {self.modalities}, got {got}")
        if attention_mask is not None and not isinstance(attention_mask, Mapping):
            raise InputError(f"attention_mask: expected None or a dict modality -> mask, got {describe(attention_mask)}")
        batch = None
        for modality, entry in self.spec.items():
            x = input_array[modality]
            tokens = entry.get("input_type") == "tokens"
            good = isinstance(x, torch.Tensor) and (
                (tokens and x.dim() == 2 and not x.dtype.is_floating_point)
                or (not tokens and x.dim() == 3 and x.dtype.is_floating_point and x.shape[-1] == entry["input_dim"]))
            if not good or x.shape[1] != entry["input_len"]:
                want = (f"token ids [batch, {entry['input_len']}]" if tokens
                        else f"a float tensor [batch, {entry['input_len']}, {entry['input_dim']}]")
                raise InputError(f"input_array[{modality!r}]: expected {want}, got {describe(x)}")
            if batch is not None and x.shape[0] != batch:
                raise InputError(f"input_array[{modality!r}]: expected batch size {batch} like the other modalities, "
                                 f"got {x.shape[0]}")
            batch = x.shape[0]
            mask = (attention_mask or {}).get(modality)
            if mask is not None and (not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(x.shape[:2])):
                raise InputError(f"attention_mask[{modality!r}]: expected shape {list(x.shape[:2])} or None, "
                                 f"got {describe(mask)}")

    def forward(self, input_array: Mapping[str, torch.Tensor],
                attention_mask: Mapping[str, torch.Tensor | None] | None = None,
                output_array: torch.Tensor | None = None, return_attentions: bool = False):
        """Fuse and run the `Perceiver`. In a pipeline stage without the projections (see
        `gperc_core.parallel.pipeline.cut_stage`) ``input_array`` is the previous stage's latents and
        goes straight to the perceiver stage.

        With ``modality_ensemble`` in evaluation mode the output is the mean of the log-probabilities
        (log-softmax over the last axis, in float32) of the model given all modalities and given each
        modality alone (the others masked out, as ``modality_dropout`` hides them in training); the
        attentions returned are those of the pass given all modalities."""
        if self.projections is None:
            return self.perceiver(input_array, attention_mask, output_array, return_attentions)
        fused, mask = self.fuse(input_array, attention_mask)
        out = self.perceiver(fused, mask, output_array, return_attentions)
        if self.training or not self.ensemble:
            return out
        logits, attentions = out if return_attentions else (out, None)
        alone = [self.perceiver(*self.fuse(input_array, subset_masks(self.modalities, input_array, attention_mask, m)),
                                output_array) for m in self.modalities]
        mean = mean_log_probs([logits, *alone])
        return (mean, attentions) if return_attentions else mean

    # The same utilities as a Perceiver (they only use the module's parameters and ``config``).
    num_parameters = Perceiver.num_parameters
    save = Perceiver.save
    from_pretrained = Perceiver.__dict__["from_pretrained"]


def subset_masks(modalities: list[str], input_array: Mapping[str, torch.Tensor],
                 attention_mask: Mapping[str, torch.Tensor | None] | torch.Tensor | None,
                 only: str | None) -> dict[str, torch.Tensor]:
    """Return a mask dict modality -> ``[b, m_i]`` bool for a fused model's input given every modality
    (``only=None``: each modality's own mask, all-real where it has none) or the modality ``only``
    alone (every other modality all-masked: hidden whole, as ``modality_dropout`` hides it)."""
    from gperc_core.model.sentinels import resolve_mask

    masks = attention_mask if isinstance(attention_mask, Mapping) else {}
    out = {}
    for modality in modalities:
        x = input_array[modality]
        own = resolve_mask(masks.get(modality))
        real = own.bool() if own is not None else torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        out[modality] = real if only is None or modality == only else torch.zeros_like(real)
    return out


def mean_log_probs(logits: list[torch.Tensor]) -> torch.Tensor:
    """The mean over passes of the log-probabilities (log-softmax over the last axis, float32): the
    output of a ``modality_ensemble``."""
    return torch.stack([torch.log_softmax(t.float(), dim=-1) for t in logits]).mean(0)


def single_model_class(config: PerceiverConfig) -> type[nn.Module]:
    """The class of one model of ``config`` (ignoring ``ensemble_size``): a `ModalityFusion` when it has a
    ``fusion`` field, else a `Perceiver`."""
    return ModalityFusion if config.get("fusion") else Perceiver


__all__ = ["ModalityFusion", "fused_config", "fusion_spec", "single_model_class", "FUSION_KEYS", "subset_masks",
           "mean_log_probs"]
