"""The Perceiver / Perceiver IO model with gperc's documented API.

`Perceiver(config)` maps an input array ``[b, m, c]`` (or token ids ``[b, m]``) to latents
``[b, n, d]`` by cross-attention (`EncoderBlock`), refines them with self-attention
(`ProcessorBlock` x ``num_layers``), and reads them out with an output query array ``[b, o, e]``
by cross-attention (`DecoderBlock`), followed by an optional reduction over the ``o`` queries and
a projection to ``n_classes``.
"""

from __future__ import annotations

import contextlib
import contextvars
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from gperc_core.model.attention import Block
from gperc_core.model.init import scaled_normal_
from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import ConfigError, InputError, describe
from gperc_core.model.position import build_position_encoding, fourier_features, sinusoid_encoding
from gperc_core.model.sentinels import resolve_mask, resolve_output_array
from gperc_core.model.stem import ConvStem

__all__ = ["build_position_encoding", "Block", "Embeddings", "EncoderBlock", "ProcessorBlock",
           "DecoderBlock", "Perceiver", "validate_inputs", "build_unit", "unit_seed", "materialising", "unit_prefix", "INPUT_UNITS",
           "Materialise"]

INPUT_UNITS: tuple[str, ...] = ("input_embedding", "input_stem", "input_projection", "input_pos", "input_pos_table",
                                 "input_fourier", "latent")
"""The members of `Embeddings` that belong with the encoder (its first pipeline stage); the other one,
``output_query``, belongs with the decoder."""


Materialise = Callable[[str], bool]
"""A predicate on unit names (``"encoder"``, ``"processors.1"``, ``"embeddings.latent"``...): True for the
units to build with real weights, False for those to build on the meta device (no memory)."""


def unit_seed(seed: int, name: str) -> int:
    """The seed that initialises the unit ``name`` of a model of config seed ``seed`` (stable across
    processes and Python versions)."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 63)


_MATERIALISE: contextvars.ContextVar[Materialise | None] = contextvars.ContextVar("gperc_materialise", default=None)
_UNIT_PREFIX: contextvars.ContextVar[str] = contextvars.ContextVar("gperc_unit_prefix", default="")


@contextmanager
def materialising(materialise: Materialise | None) -> Iterator[None]:
    """Context in which models build only the units ``materialise`` accepts with weights (on the CPU)
    and every other unit on the meta device; ``None`` builds everything as usual."""
    token = _MATERIALISE.set(materialise)
    try:
        yield
    finally:
        _MATERIALISE.reset(token)


@contextmanager
def unit_prefix(prefix: str) -> Iterator[None]:
    """Context in which the unit names `build_unit` checks against ``materialise`` start with ``prefix``
    (e.g. ``"perceiver."`` for the Perceiver inside a `ModalityFusion`)."""
    token = _UNIT_PREFIX.set(_UNIT_PREFIX.get() + prefix)
    try:
        yield
    finally:
        _UNIT_PREFIX.reset(token)


@contextmanager
def build_unit(seed: int, name: str) -> Iterator[None]:
    """Context that builds the unit ``name``: its random initialisation drawn from `unit_seed` (without
    touching the global RNG), on the meta device when the `materialising` predicate rejects it.

    Every unit is seeded on its own, so the rank that owns a pipeline stage builds exactly the
    weights the single-process model has, without building the other units."""
    materialise = _MATERIALISE.get()
    if materialise is None:
        place: Any = contextlib.nullcontext()
    else:
        place = torch.device("cpu" if materialise(_UNIT_PREFIX.get() + name) else "meta")
    with torch.random.fork_rng(devices=[]), place:
        torch.default_generator.manual_seed(unit_seed(seed, name))  # the CPU stream only: no CUDA RNG reseeded
        yield


def _check_config(config: Any) -> PerceiverConfig:
    if not isinstance(config, PerceiverConfig):
        raise ConfigError(f"config: expected a PerceiverConfig, got {type(config).__name__}")
    config.validate()
    if config.ensemble_size != 1:
        raise ConfigError(f"ensemble_size: expected 1 for one model (gperc_core.model_for_config builds the "
                          f"Ensemble of a config with more), got {config.ensemble_size}")
    return config


def validate_inputs(config: PerceiverConfig, input_array: Any, attention_mask: Any = None,
                    output_array: Any = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Check model inputs against ``config`` before any compute.

    Returns ``(attention_mask, output_array)`` with sentinels turned into ``None``. Raises
    `InputError` naming the argument, the expected and the actual shape, dtype or value. Value
    checks (token range, 0/1 masks, empty rows) run eagerly only, so compiled graphs stay whole.
    """
    attention_mask = resolve_mask(attention_mask)
    output_array = resolve_output_array(output_array)
    if torch.compiler.is_compiling():
        return attention_mask, output_array
    if not isinstance(input_array, torch.Tensor):
        raise InputError(f"input_array: expected a torch.Tensor, got {type(input_array).__name__} {describe(input_array)}")
    if config.input_type == "tokens":
        if input_array.dim() != 2 or input_array.dtype.is_floating_point or input_array.dtype == torch.bool:
            raise InputError(f"input_array: expected integer token ids of shape [batch, m<={config.input_len}] "
                             f"(input_type='tokens'), got {describe(input_array)}")
        if input_array.numel() and (int(input_array.min()) < 0 or int(input_array.max()) >= config.input_num_tokens):
            raise InputError(f"input_array: expected token ids in [0, {config.input_num_tokens}), got values in "
                             f"[{int(input_array.min())}, {int(input_array.max())}]")
    else:
        if input_array.dim() != 3 or input_array.shape[-1] != config.input_dim or not input_array.dtype.is_floating_point:
            raise InputError(f"input_array: expected a float tensor [batch, m<={config.input_len}, "
                             f"{config.input_dim}] (input_type='raw'), got {describe(input_array)}")
    b, m = input_array.shape[0], input_array.shape[1]
    if not 1 <= m <= config.input_len:
        raise InputError(f"input_array: expected between 1 and input_len={config.input_len} elements on axis 1, "
                         f"got {m}")
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (b, m):
            raise InputError(f"attention_mask: expected shape [{b}, {m}] (or the [{b}] sentinel), "
                             f"got {describe(attention_mask)}")
        if attention_mask.dtype != torch.bool:
            if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
                raise InputError("attention_mask: expected booleans or 0/1 values, got other values")
            keep = attention_mask != 0
        else:
            keep = attention_mask
        empty = (~keep.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise InputError(f"attention_mask: expected at least one unmasked position per sample, "
                             f"samples {empty[:8]} have none")
    if config.input_stem and len(config.input_shape) > 1 and m != config.input_len:
        raise InputError(f"input_array: expected the whole grid {list(config.input_shape)} (input_len="
                         f"{config.input_len} elements on axis 1) with input_stem, got {m}")
    if output_array is not None:
        if (not isinstance(output_array, torch.Tensor) or output_array.dim() != 3
                or output_array.shape[0] != b or output_array.shape[2] != config.output_dim
                or not output_array.dtype.is_floating_point):
            raise InputError(f"output_array: expected a float tensor [{b}, o, {config.output_dim}] (or the [{b}] "
                             f"sentinel), got {describe(output_array)}")
    if config.decoder_reduction == "eot":
        o = output_array.shape[1] if output_array is not None else config.output_len
        if attention_mask is not None and o != m:
            raise InputError(f"output_array: decoder_reduction='eot' picks the query at the last unmasked input "
                             f"position, so it expects o == m = {m} queries, got {o}")
    return attention_mask, output_array


class Embeddings(nn.Module):
    """Input embedding and position encoding, the latent array and the learned output queries.

    ``forward(input_array, attention_mask=None, output_array=None)`` returns
    ``(input_array [b, m, input_embed_dim], attention_mask, latent_array [b, n, d], output_array [b, o, e])``.
    """

    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__()
        self.config = _check_config(config)
        c = config

        def unit(name: str) -> Any:
            return build_unit(c.seed, f"embeddings.{name}")

        self.input_embedding = None
        if c.input_type == "tokens":
            with unit("input_embedding"):
                self.input_embedding = nn.Embedding(c.input_num_tokens, c.input_dim)
        self.input_stem: ConvStem | None = None
        if c.input_stem:
            with unit("input_stem"):
                self.input_stem = ConvStem(c.input_stem, c.input_shape, c.input_dim)
        self.input_projection: nn.Linear | None = None
        if c.input_projection:
            width = c.input_stem["channels"][-1] if c.input_stem else c.input_dim
            with unit("input_projection"):
                self.input_projection = nn.Linear(width, c.input_projection)
        self.input_pos: nn.Parameter | None = None
        if c.input_pos_enc == "trainable":
            with unit("input_pos"):
                self.input_pos = build_position_encoding("trainable", c, c.encoded_len,
                                                         c.input_pos_dim or c.input_feature_dim)
        elif c.input_pos_enc == "sinusoid":
            with unit("input_pos_table"):
                self.register_buffer("input_pos_table", sinusoid_encoding(c.encoded_len, c.input_feature_dim),
                                     persistent=False)
        elif c.input_pos_enc == "fourier":
            with unit("input_fourier"):
                feats = fourier_features(c.encoded_shape, c.fourier_num_bands, c.fourier_max_resolution,
                                         concat_pos=c.fourier_concat_pos, sine_only=c.fourier_sine_only)
                self.register_buffer("input_fourier", feats, persistent=False)
        with unit("latent"):
            self.latent = build_position_encoding("trainable", c, c.latent_len, c.latent_dim)
        self.output_query: nn.Parameter | None = None
        if not c.encoder_only:
            query_kind = "trainable" if c.output_pos_enc == "none" else c.output_pos_enc
            with unit("output_query"):
                self.output_query = build_position_encoding(query_kind, c, c.output_len, c.output_dim)

    def forward(self, input_array: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_array: torch.Tensor | None = None):
        attention_mask, output_array = validate_inputs(self.config, input_array, attention_mask, output_array)
        x, attention_mask = self.embed(input_array, attention_mask)
        b = x.shape[0]
        latents = self.latent.unsqueeze(0).expand(b, -1, -1)
        if output_array is None and self.output_query is not None:
            output_array = self.output_query.unsqueeze(0).expand(b, -1, -1)
        return x, attention_mask, latents, output_array

    def embed_input(self, input_array: torch.Tensor) -> torch.Tensor:
        """Return the input array embedded (tokens), through the convolutional ``input_stem`` and projected
        (``input_projection``) when configured, with its position encoding added or concatenated."""
        return self.embed(input_array)[0]

    def embed(self, input_array: torch.Tensor, attention_mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(embedded input, its mask)``: `embed_input` with the mask the encoder reads (the
        ``input_stem``'s when it shortens the grid; ``attention_mask`` itself otherwise)."""
        x = self.input_embedding(input_array) if self.input_embedding is not None else input_array
        if self.input_stem is not None:
            x, attention_mask = self.input_stem(x, attention_mask)
        if self.input_projection is not None:
            x = self.input_projection(x)
        m = x.shape[1]
        kind = self.config.input_pos_enc
        if kind == "trainable" and self.config.input_pos_dim:
            pos = self.input_pos[:m].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
            x = torch.cat([x, pos], dim=-1)
        elif kind == "trainable":
            x = x + self.input_pos[:m].to(x.dtype)
        elif kind == "sinusoid":
            x = x + self.input_pos_table[:m].to(x.dtype)
        elif kind == "fourier":
            feats = self.input_fourier[:m].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
            x = torch.cat([x, feats], dim=-1)
        return x, attention_mask


class EncoderBlock(nn.Module):
    """Cross-attention of the latents over the input array; ``forward`` returns ``(latents, attention)``.

    With ``encoder_sink`` a learned token (``sink``, ``[1, 1, input_embed_dim]``, zeros at the start) is
    appended to every input array and never masked: a latent can put attention on it instead of the input,
    so the share left for the inputs that match its query grows with how many there are, and the read-out
    can count (a softmax over the inputs alone gives the same output for an input and that input repeated
    twice). The attention returned then has one more column, the sink's, last.
    """

    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__()
        c = _check_config(config)
        self.block = Block(kv_dim=c.input_embed_dim, q_dim=c.latent_dim, num_heads=c.n_cross_heads,
                           ffw_dim=c.encoder_ffw, dropout=c.dropout, add_residual=c.encoder_residual,
                           qk_dim=c.cross_qk, v_dim=c.cross_v)
        if c.encoder_key_init_gain:
            scaled_normal_(self.block.attention.key, c.encoder_key_init_gain)
        self.sink: nn.Parameter | None = None
        if c.encoder_sink:
            self.sink = nn.Parameter(torch.zeros(1, 1, c.input_embed_dim))

    def forward(self, input_array: torch.Tensor, latent_array: torch.Tensor,
                attention_mask: torch.Tensor | None = None, return_attention: bool = False):
        if self.sink is not None:
            b = input_array.shape[0]
            input_array = torch.cat([input_array, self.sink.to(input_array.dtype).expand(b, -1, -1)], dim=1)
            if attention_mask is not None:
                keep = torch.ones(b, 1, dtype=attention_mask.dtype, device=attention_mask.device)
                attention_mask = torch.cat([attention_mask, keep], dim=1)
        return self.block(input_array, latent_array, attention_mask, return_attention)


class ProcessorBlock(nn.Module):
    """One self-attention layer over the latents; ``forward`` returns ``(latents, attention)``."""

    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__()
        c = _check_config(config)
        self.block = Block(kv_dim=c.latent_dim, q_dim=c.latent_dim, num_heads=c.n_self_heads,
                           ffw_dim=c.processor_ffw, dropout=c.dropout, add_residual=True, self_attention=True,
                           qk_dim=c.self_qk, v_dim=c.self_v)

    def forward(self, latent_array: torch.Tensor, return_attention: bool = False):
        return self.block(None, latent_array, None, return_attention)


class DecoderBlock(nn.Module):
    """Cross-attention of the output queries over the latents, the reduction over queries, and the
    projection to ``n_classes``; ``forward`` returns ``(logits, attention)``.

    With ``tie_output_embedding`` the projection is the token embedding passed to ``forward`` as
    ``embedding_weight`` (``[n_classes, output_dim]``) plus this block's ``output_bias``."""

    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__()
        c = _check_config(config)
        self.reduction = c.decoder_reduction
        self.block = Block(kv_dim=c.latent_dim, q_dim=c.output_dim, num_heads=c.n_decoder_heads,
                           ffw_dim=c.decoder_ffw, dropout=c.dropout, add_residual=c.decoder_residual,
                           qk_dim=c.decoder_qk, v_dim=c.decoder_v)
        self.projection = None
        if c.decoder_projection and not c.tie_output_embedding:
            self.projection = nn.Linear(c.output_dim, c.num_classes)
        if c.tie_output_embedding:
            self.output_bias = nn.Parameter(torch.zeros(c.num_classes))

    def forward(self, latent_array: torch.Tensor, output_array: torch.Tensor,
                attention_mask: torch.Tensor | None = None, return_attention: bool = False,
                embedding_weight: torch.Tensor | None = None):
        out, attention = self.block(latent_array, output_array, None, return_attention)
        out = self.reduce(out, attention_mask)
        if self.projection is not None:
            out = self.projection(out)
        elif embedding_weight is not None:
            out = torch.nn.functional.linear(out, embedding_weight.to(out.dtype), self.output_bias.to(out.dtype))
        return out, attention

    def reduce(self, out: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Reduce ``[b, o, e]`` over the ``o`` queries as ``decoder_reduction`` says (``None`` keeps all)."""
        r = self.reduction
        if r is None:
            return out
        if r == "mean":
            return out.mean(dim=1)
        if r == "max":
            return out.amax(dim=1)
        if r == "sum":
            return out.sum(dim=1)
        if r == "first":
            return out[:, 0]
        if r == "last":
            return out[:, -1]
        # "eot": the query at the last unmasked input position (the end-of-text token)
        if attention_mask is None:
            return out[:, -1]
        last = (attention_mask != 0).long().sum(dim=1).clamp(min=1) - 1
        return out[torch.arange(out.shape[0], device=out.device), last]


class Perceiver(nn.Module):
    """The Perceiver (IO): ``forward(input_array, attention_mask=None, output_array=None,
    return_attentions=False)`` returns logits, or ``(logits, attentions)`` with the attention of the
    encoder, of each processor layer and of the decoder when ``return_attentions=True``.

    Logits are ``[b, n_classes]`` with a decoder reduction and ``[b, o, n_classes]`` without one.
    """

    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__()
        self.config = _check_config(config)
        seed = int(config.seed)
        self.embeddings = Embeddings(config)
        with build_unit(seed, "encoder"):
            self.encoder = EncoderBlock(config)
        processors = []
        for i in range(config.n_processor_blocks):
            with build_unit(seed, f"processors.{i}"):
                processors.append(ProcessorBlock(config))
        self.processors = nn.ModuleList(processors)
        self.decoder: DecoderBlock | None = None
        if not config.encoder_only:
            with build_unit(seed, "decoder"):
                self.decoder = DecoderBlock(config)

    # ----------------------------------------------------------------- stages of the forward pass
    def processor_at(self, layer: int) -> ProcessorBlock | None:
        """Return the processor block that runs as layer ``layer`` (the shared one with ``share_weights``,
        block ``layer % processor_blocks`` when the layers cycle); ``None`` in a pipeline stage that does
        not hold it."""
        return self.processors[layer % self.config.n_processor_blocks]

    def encode(self, input_array: torch.Tensor, attention_mask: torch.Tensor | None = None,
               return_attention: bool = False):
        """Embed the input and cross-attend the latents to it; returns ``(latents, attention)``."""
        x, attention_mask = self.embeddings.embed(input_array, attention_mask)
        latents = self.embeddings.latent.unsqueeze(0).expand(x.shape[0], -1, -1).to(x.dtype)
        return self.encoder(x, latents, attention_mask, return_attention)

    def decode(self, latents: torch.Tensor, output_array: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None, return_attention: bool = False):
        """Read the latents out with the output queries; returns ``(logits, attention)``."""
        if output_array is None:
            output_array = self.embeddings.output_query.unsqueeze(0).expand(latents.shape[0], -1, -1)
        tied = self.embeddings.input_embedding.weight if self.config.tie_output_embedding else None
        return self.decoder(latents, output_array, attention_mask, return_attention, embedding_weight=tied)

    def forward(self, input_array: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_array: torch.Tensor | None = None, return_attentions: bool = False):
        """Run the blocks this model holds. A pipeline stage (see `gperc_core.parallel.pipeline.cut_stage`)
        lacks some: without its encoder ``input_array`` is the latents ``[b, n, d]`` of the previous
        stage, absent processors are skipped, and without its decoder the latents are returned."""
        if self.encoder is not None:
            attention_mask, output_array = validate_inputs(self.config, input_array, attention_mask, output_array)
            latents, att = self.encode(input_array, attention_mask, return_attentions)
            attentions = [att]
        else:
            attention_mask, output_array = resolve_mask(attention_mask), resolve_output_array(output_array)
            latents, attentions = input_array, []
        for layer in range(self.config.num_layers):
            block = self.processor_at(layer)
            if block is not None:
                latents, att = block(latents, return_attentions)
                attentions.append(att)
        if self.decoder is None:
            latents = latents.contiguous()
            return (latents, attentions) if return_attentions else latents
        logits, att = self.decode(latents, output_array, attention_mask, return_attentions)
        attentions.append(att)
        if return_attentions:
            return logits, attentions
        return logits

    # ----------------------------------------------------------------- utilities
    def num_parameters(self, include_non_trainable: bool = True) -> int:
        """Return the number of parameters, counting frozen ones only when ``include_non_trainable``."""
        return sum(p.numel() for p in self.parameters() if include_non_trainable or p.requires_grad)

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` atomically; returns it."""
        from gperc_core.io.checkpoint import save_model

        return save_model(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "Perceiver":
        """Load a model written by `save` (JSON config and safetensors weights; never unpickles)."""
        from gperc_core.io.checkpoint import load_model

        return load_model(directory, map_location=map_location, model_cls=cls)


PerceiverIO = Perceiver
"""Alias for users coming from Perceiver IO implementations."""
