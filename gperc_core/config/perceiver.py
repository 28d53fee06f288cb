"""`PerceiverConfig`: every hyper-parameter of a Perceiver, with gperc's field names.

A config cannot be silently wrong:

- its fields are declared (`PerceiverConfig.field_defaults`): an unknown keyword is a `ConfigError`
  naming the closest field (``PerceiverConfig(latnt_dim=64)`` -> "did you mean 'latent_dim'?");
- it validates on construction, on ``config.name = value`` and on ``config["name"] = value``; a
  failed assignment raises and leaves the config unchanged;
- it holds model hyper-parameters only. A modality's data options (image shape, patch size, MFCC
  settings, ...) belong to the task options, not here; a plugin's config subclass (``ImageConfig``)
  declares the extra fields of its gperc signature in `PerceiverConfig.extra_fields`.

`from_dict` / `from_json` / `from_toml` read serialised configs: keys of `LEGACY_KEYS` (modality
data that plugin configs of gperc-core 0.1 stored in ``config.json``) are dropped; any other unknown
key is an error, or with ``strict=False`` (how checkpoints are read) dropped with a `ConfigWarning`.
It allows `config["name"]` access, and round-trips through JSON and TOML so that checkpoints and
task cards can carry it.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import tomllib
import warnings
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

from gperc_core.config.stem import check_stem, stem_shape
from gperc_core.errors import ConfigError

DECODER_REDUCTIONS = ("mean", "max", "sum", "first", "last", "eot", None)
INPUT_TYPES = ("raw", "tokens")
POSITION_ENCODINGS = ("trainable", "sinusoid", "fourier", "none")

# name -> default. Order is the documented order of gperc's PerceiverConfig, then additions.
_DEFAULTS: dict[str, Any] = {
    "input_len": 64,
    "input_dim": 8,
    "latent_len": 4,
    "latent_dim": 16,
    "output_len": 1,
    "output_dim": 10,
    "ffw_latent": 32,
    "ffw_output": 32,
    "num_heads": 2,
    "num_layers": 2,
    "input_type": "raw",
    "input_num_tokens": None,
    "decoder_reduction": "mean",
    "decoder_residual": False,
    "decoder_projection": True,
    "n_classes": None,
    "pos_init_std": 0.02,
    "dropout": 0.1,
    "seed": 4,
    # additions over gperc
    "input_pos_enc": "trainable",
    "input_pos_shape": None,
    "fourier_num_bands": 16,
    "fourier_max_resolution": None,
    "output_pos_enc": "trainable",
    "cross_heads": None,
    "self_heads": None,
    "decoder_heads": None,
    "cross_widening": None,
    "self_widening": None,
    "share_weights": False,
    # the encoder key projection starts at N(0, gain^2 / fan_in) so latents read a few inputs, not their mean
    # (gperc_core.model.init; 0 keeps PyTorch's default initialisation)
    "encoder_key_init_gain": 6.0,
    # a learned token appended to every input array that the encoder's latents may attend to instead of the
    # input: the softmax read-out then depends on how many inputs match a query, not only on their proportion
    "encoder_sink": False,
    # a multimodal model (`gperc_core.model.fusion.ModalityFusion`): modality -> {input_len, input_dim,
    # input_type, input_num_tokens}, and the probability that training hides a modality of a sample
    "fusion": None,
    "modality_dropout": 0.0,
    # evaluation averages the log-probabilities given all modalities and given each one alone
    "modality_ensemble": False,
    # what a `transformers` Perceiver needs (gperc_core.interop.transformers); the defaults are gperc's model
    "cross_qk_channels": None,
    "cross_v_channels": None,
    "self_qk_channels": None,
    "self_v_channels": None,
    "decoder_qk_channels": None,
    "decoder_v_channels": None,
    "encoder_residual": True,
    "processor_blocks": None,
    "input_projection": None,
    "input_pos_dim": None,
    "fourier_concat_pos": True,
    "fourier_sine_only": False,
    "encoder_only": False,
    "tie_output_embedding": False,
    # convolutions over the input grid before the encoder (gperc_core.model.stem): {channels, strides, kernel_size}
    "input_stem": None,
    # a deep ensemble of this many independently initialised models (gperc_core.model.ensemble; 1: one model)
    "ensemble_size": 1,
}

FIELD_DOCS: dict[str, str] = {
    "cross_qk_channels": "query/key width of the encoder cross-attention (None: latent_dim)",
    "cross_v_channels": "value width of the encoder cross-attention (None: its query/key width)",
    "self_qk_channels": "query/key width of the processor self-attention (None: latent_dim)",
    "self_v_channels": "value width of the processor self-attention (None: its query/key width)",
    "decoder_qk_channels": "query/key width of the decoder cross-attention (None: output_dim)",
    "decoder_v_channels": "value width of the decoder cross-attention (None: its query/key width)",
    "encoder_residual": "add the latents to the encoder cross-attention output (the query residual)",
    "processor_blocks": "distinct processor blocks that the num_layers layers cycle through (None: one per layer)",
    "input_projection": "width of a linear layer applied to each input element before its position encoding",
    "input_pos_dim": "width of a trainable input position table concatenated to the input (None: added)",
    "fourier_concat_pos": "Fourier features start with the positions themselves",
    "fourier_sine_only": "Fourier features use sines only (no cosines)",
    "encoder_only": "no decoder: the model returns the latents [b, latent_len, latent_dim]",
    "tie_output_embedding": "the decoder projection is the input token embedding (transposed) plus a bias",
}
"""What each field added for imported models means (gperc's own fields are documented in the docs)."""

LEGACY_KEYS = frozenset({
    # ImageConfig, TextConfig, BinaryConfig and AudioConfig of gperc-core 0.1 stored these in config.json
    "image_shape", "task", "num_bands", "representation", "patch_size", "vocab_size", "max_len", "seqlen",
    "decoder_cross_attention", "sample_rate", "duration", "hop_length", "num_mfcc", "num_segments",
    "num_channels", "samples_per_track", "samples_per_segment",
})
"""Keys a serialised config may carry that are not model fields; `PerceiverConfig.from_dict` drops them."""


class ConfigWarning(UserWarning):
    """A serialised config carried keys that were dropped (read with ``strict=False``)."""

_INT_FIELDS = ("input_len", "input_dim", "latent_len", "latent_dim", "output_len", "output_dim",
               "ffw_latent", "ffw_output", "num_heads", "fourier_num_bands")


class PerceiverConfig:
    """Hyper-parameters of a `Perceiver`; gperc's fields plus position encodings, head counts
    and MLP widening per attention kind, and processor weight sharing.

    An unknown keyword is a `ConfigError` naming the closest field; assignment validates.
    """

    extra_fields: ClassVar[Mapping[str, Any]] = {}
    """Fields a subclass adds (name -> default), e.g. ``ImageConfig``'s ``image_shape``; none here."""

    def __init__(self, **kwargs: Any) -> None:
        defaults = self.field_defaults()
        for key in kwargs:
            if key not in defaults:
                raise ConfigError(_unknown(type(self).__name__, key, defaults))
        values = {**copy.deepcopy(defaults), **kwargs}
        for key, value in values.items():
            object.__setattr__(self, key, list(value) if isinstance(value, tuple) else value)
        self.validate()

    @classmethod
    def field_defaults(cls) -> dict[str, Any]:
        """Return every field of this config class with its default: gperc's first, then additions."""
        return {**_DEFAULTS, **cls.extra_fields}

    def __setattr__(self, key: str, value: Any) -> None:
        """Set field ``key`` and validate; an unknown field or a bad value raises `ConfigError` and
        leaves the config unchanged."""
        if key not in self.field_defaults():
            raise ConfigError(_unknown(type(self).__name__, key, self.field_defaults()))
        old = self.__dict__[key]
        object.__setattr__(self, key, list(value) if isinstance(value, tuple) else value)
        try:
            self.validate()
        except ConfigError:
            object.__setattr__(self, key, old)
            raise

    def __delattr__(self, key: str) -> None:
        raise ConfigError(f"{key}: a config field cannot be deleted; set it to a value instead")

    # ----------------------------------------------------------------- mapping access
    def __getitem__(self, key: str) -> Any:
        if key not in self.__dict__:
            raise KeyError(_unknown(type(self).__name__, key, self.__dict__))
        return self.__dict__[key]

    def __setitem__(self, key: str, value: Any) -> None:
        """``config[key] = value``: the same as ``config.key = value`` (validated)."""
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.__dict__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__)

    def get(self, key: str, default: Any = None) -> Any:
        """Return field ``key``, or ``default`` when the config has no such field."""
        return self.__dict__.get(key, default)

    def keys(self) -> list[str]:
        """Return every field name, gperc's first."""
        return list(self.__dict__)

    def to_dict(self) -> dict[str, Any]:
        """Return a plain dict of every field (JSON-serialisable)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def replace(self, **changes: Any) -> "PerceiverConfig":
        """Return a validated copy (of the same class) with the fields ``changes`` applied."""
        fields = self.field_defaults()
        for key in changes:
            if key not in fields:
                raise ConfigError(_unknown(type(self).__name__, key, fields))
        new = copy.deepcopy(self)
        for key, value in changes.items():
            object.__setattr__(new, key, list(value) if isinstance(value, tuple) else value)
        return new.validate()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PerceiverConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"PerceiverConfig({body})"

    # ----------------------------------------------------------------- serialisation
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True) -> "PerceiverConfig":
        """Build a config from a plain dict (e.g. a parsed ``config.json``); missing keys take defaults.

        Keys of `LEGACY_KEYS` that are not fields of ``cls`` are dropped. Any other unknown key is a
        `ConfigError` naming the closest field, or with ``strict=False`` dropped with a `ConfigWarning`.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"config: expected a mapping of field -> value, got {type(data).__name__}")
        fields = cls.field_defaults()
        unknown = [k for k in data if k not in fields and k not in LEGACY_KEYS]
        if unknown and strict:
            raise ConfigError(_unknown(cls.__name__, unknown[0], fields))
        if unknown:
            warnings.warn(f"{cls.__name__}: dropped keys that are not config fields: {unknown}", ConfigWarning,
                          stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in fields})

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        """Return the config as JSON text, also writing it to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, sort_keys=False)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path, *, strict: bool = True) -> "PerceiverConfig":
        """Build a config from JSON text or from the path of a JSON file (see `from_dict`)."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError(f"config JSON: expected an object, got {type(data).__name__}")
        return cls.from_dict(data, strict=strict)

    def to_toml(self, path: str | Path | None = None) -> str:
        """Return the config as TOML text (``None`` fields are left out), also writing it to ``path``."""
        import tomli_w

        text = tomli_w.dumps({k: v for k, v in self.to_dict().items() if v is not None})
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_toml(cls, text_or_path: str | Path, *, strict: bool = True) -> "PerceiverConfig":
        """Build a config from TOML text or from the path of a TOML file (see `from_dict`)."""
        text = str(text_or_path)
        if "=" not in text:
            text = Path(text_or_path).read_text()
        return cls.from_dict(tomllib.loads(text), strict=strict)

    # ----------------------------------------------------------------- derived values
    @property
    def n_cross_heads(self) -> int:
        """Heads of the encoder and decoder cross-attention."""
        return int(self.cross_heads or self.num_heads)

    @property
    def n_self_heads(self) -> int:
        """Heads of the processor self-attention."""
        return int(self.self_heads or self.num_heads)

    @property
    def n_decoder_heads(self) -> int:
        """Heads of the decoder cross-attention (``decoder_heads``, else the cross-attention heads)."""
        return int(self.decoder_heads or self.n_cross_heads)

    @property
    def cross_qk(self) -> int:
        """Query/key width of the encoder cross-attention."""
        return int(self.cross_qk_channels or self.latent_dim)

    @property
    def cross_v(self) -> int:
        """Value width of the encoder cross-attention."""
        return int(self.cross_v_channels or self.cross_qk)

    @property
    def self_qk(self) -> int:
        """Query/key width of the processor self-attention."""
        return int(self.self_qk_channels or self.latent_dim)

    @property
    def self_v(self) -> int:
        """Value width of the processor self-attention."""
        return int(self.self_v_channels or self.self_qk)

    @property
    def decoder_qk(self) -> int:
        """Query/key width of the decoder cross-attention."""
        return int(self.decoder_qk_channels or self.output_dim)

    @property
    def decoder_v(self) -> int:
        """Value width of the decoder cross-attention."""
        return int(self.decoder_v_channels or self.decoder_qk)

    @property
    def n_processor_blocks(self) -> int:
        """Distinct processor blocks: 1 with ``share_weights``, ``processor_blocks`` when set, else ``num_layers``."""
        if self.share_weights:
            return 1
        return int(self.processor_blocks) if self.processor_blocks else int(self.num_layers)

    @property
    def input_feature_dim(self) -> int:
        """Width of each input element after the token embedding, the input stem or the input projection."""
        if self.input_projection:
            return int(self.input_projection)
        return int(self.input_stem["channels"][-1]) if self.input_stem else int(self.input_dim)

    @property
    def encoder_ffw(self) -> int:
        """Hidden width of the encoder MLP."""
        return round(self.latent_dim * self.cross_widening) if self.cross_widening else int(self.ffw_latent)

    @property
    def processor_ffw(self) -> int:
        """Hidden width of each processor MLP."""
        return round(self.latent_dim * self.self_widening) if self.self_widening else int(self.ffw_latent)

    @property
    def decoder_ffw(self) -> int:
        """Hidden width of the decoder MLP."""
        return round(self.output_dim * self.cross_widening) if self.cross_widening else int(self.ffw_output)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Index shape of the input array (e.g. ``(H, W)`` for an image); ``(input_len,)`` by default."""
        return tuple(self.input_pos_shape) if self.input_pos_shape else (int(self.input_len),)

    @property
    def encoded_shape(self) -> tuple[int, ...]:
        """Index shape of the elements the encoder reads: `input_shape`, or the grid the ``input_stem``
        leaves (its strides shorten each axis)."""
        return stem_shape(self.input_shape, self.input_stem)

    @property
    def encoded_len(self) -> int:
        """Number of elements the encoder reads (``input_len``, fewer after a strided ``input_stem``);
        input position encodings have this length."""
        return math.prod(self.encoded_shape)

    @property
    def fourier_channels(self) -> int:
        """Channels the Fourier position features add to each input element."""
        per_axis = int(self.fourier_num_bands) * (1 if self.fourier_sine_only else 2)
        return len(self.input_shape) * (per_axis + (1 if self.fourier_concat_pos else 0))

    @property
    def input_embed_dim(self) -> int:
        """Channel width the encoder reads: the input features plus Fourier features or a trainable position
        table when they are concatenated."""
        extra = 0
        if self.input_pos_enc == "fourier":
            extra = self.fourier_channels
        elif self.input_pos_enc == "trainable" and self.input_pos_dim:
            extra = int(self.input_pos_dim)
        return self.input_feature_dim + extra

    @property
    def num_classes(self) -> int:
        """Width of the decoder's final projection: ``n_classes``, or ``output_dim`` when unset."""
        return int(self.n_classes) if self.n_classes else int(self.output_dim)

    # ----------------------------------------------------------------- validation
    def validate(self) -> "PerceiverConfig":
        """Check every field; raise `ConfigError` naming the field, the expected and the actual value."""
        for name in _INT_FIELDS:
            _positive_int(name, getattr(self, name))
        if not isinstance(self.num_layers, int) or isinstance(self.num_layers, bool) or self.num_layers < 0:
            raise ConfigError(f"num_layers: expected an integer >= 0, got {self.num_layers!r}")
        for name in ("cross_heads", "self_heads", "decoder_heads"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        for name in ("cross_widening", "self_widening"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"{name}: expected a positive number or None, got {value!r}")
        self._validate_interop()
        if self.cross_qk_channels is None and self.cross_v_channels is None and self.latent_dim % self.n_cross_heads:
            raise ConfigError(
                f"latent_dim: expected a multiple of the cross-attention heads ({self.n_cross_heads}), "
                f"got {self.latent_dim}")
        if self.self_qk_channels is None and self.self_v_channels is None and self.latent_dim % self.n_self_heads:
            raise ConfigError(
                f"latent_dim: expected a multiple of the self-attention heads ({self.n_self_heads}), "
                f"got {self.latent_dim}")
        if (self.decoder_qk_channels is None and self.decoder_v_channels is None
                and self.output_dim % self.n_decoder_heads):
            raise ConfigError(
                f"output_dim: expected a multiple of the decoder heads ({self.n_decoder_heads}; set "
                f"decoder_heads to change them), got {self.output_dim}")
        if self.input_type not in INPUT_TYPES:
            raise ConfigError(f"input_type: expected one of {INPUT_TYPES}, got {self.input_type!r}")
        if self.input_type == "tokens":
            if self.input_num_tokens is None:
                raise ConfigError("input_num_tokens: expected a positive integer when input_type='tokens', got None")
            _positive_int("input_num_tokens", self.input_num_tokens)
        if self.decoder_reduction not in DECODER_REDUCTIONS:
            raise ConfigError(f"decoder_reduction: expected one of {DECODER_REDUCTIONS}, "
                              f"got {self.decoder_reduction!r}")
        if self.n_classes is not None:
            _positive_int("n_classes", self.n_classes)
        for name in ("input_pos_enc", "output_pos_enc"):
            if getattr(self, name) not in POSITION_ENCODINGS:
                raise ConfigError(f"{name}: expected one of {POSITION_ENCODINGS}, got {getattr(self, name)!r}")
        if self.input_pos_shape is not None:
            shape = self.input_pos_shape
            if not isinstance(shape, (list, tuple)) or not shape or not all(
                    isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
                raise ConfigError(f"input_pos_shape: expected a list of positive integers, got {shape!r}")
            if math.prod(shape) != self.input_len:
                raise ConfigError(f"input_pos_shape: expected a shape whose product is input_len="
                                  f"{self.input_len}, got {list(shape)} (product {math.prod(shape)})")
        if self.fourier_max_resolution is not None:
            res = self.fourier_max_resolution
            if not isinstance(res, (list, tuple)) or len(res) != len(self.input_shape) or not all(
                    isinstance(r, (int, float)) and r > 0 for r in res):
                raise ConfigError(f"fourier_max_resolution: expected {len(self.input_shape)} positive numbers "
                                  f"(one per axis of input_pos_shape), got {res!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: expected a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed: expected an integer >= 0, got {self.seed!r}")
        if not isinstance(self.pos_init_std, (int, float)) or self.pos_init_std < 0:
            raise ConfigError(f"pos_init_std: expected a number >= 0, got {self.pos_init_std!r}")
        gain = self.encoder_key_init_gain
        if not isinstance(gain, (int, float)) or isinstance(gain, bool) or not 0 <= gain < float("inf"):
            raise ConfigError(f"encoder_key_init_gain: expected a finite number >= 0, got {gain!r}")
        for name in ("decoder_residual", "decoder_projection", "share_weights", "encoder_residual",
                     "fourier_concat_pos", "fourier_sine_only", "encoder_only", "tie_output_embedding",
                     "encoder_sink"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        self._validate_fusion()
        self._validate_stem()
        _positive_int("ensemble_size", self.ensemble_size)
        if self.ensemble_size > 1 and self.encoder_only:
            raise ConfigError(f"ensemble_size: expected 1 with encoder_only=True (members' latents are not "
                              f"probabilities to average), got {self.ensemble_size}")
        return self

    def _validate_interop(self) -> None:
        """Check the fields added for imported models (attention widths, input projection, processor cycle)."""
        for name in ("cross_qk_channels", "cross_v_channels", "self_qk_channels", "self_v_channels",
                     "decoder_qk_channels", "decoder_v_channels", "processor_blocks", "input_projection",
                     "input_pos_dim"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        widths = (("cross", self.n_cross_heads, "cross_heads"), ("self", self.n_self_heads, "self_heads"),
                  ("decoder", self.n_decoder_heads, "decoder_heads"))
        for kind, heads, heads_field in widths:
            if getattr(self, f"{kind}_qk_channels") is None and getattr(self, f"{kind}_v_channels") is None:
                continue
            for part in ("qk", "v"):
                width = getattr(self, f"{kind}_{part}")
                if width % heads:
                    raise ConfigError(f"{kind}_{part}_channels: expected a multiple of the {kind} heads ({heads}, "
                                      f"{heads_field}), got {width}")
        if self.processor_blocks is not None:
            if self.share_weights:
                raise ConfigError("processor_blocks: expected None with share_weights=True (one shared block), "
                                  f"got {self.processor_blocks}")
            if self.num_layers % self.processor_blocks:
                raise ConfigError(f"processor_blocks: expected a divisor of num_layers={self.num_layers}, "
                                  f"got {self.processor_blocks}")
        if self.input_projection is not None and self.input_type == "tokens":
            raise ConfigError("input_projection: expected None with input_type='tokens' (the token embedding "
                              f"sets the width), got {self.input_projection}")
        if self.input_pos_dim is not None and self.input_pos_enc != "trainable":
            raise ConfigError(f"input_pos_dim: expected None unless input_pos_enc='trainable', got "
                              f"{self.input_pos_dim} with input_pos_enc={self.input_pos_enc!r}")
        if self.tie_output_embedding:
            if self.input_type != "tokens" or self.encoder_only or not self.decoder_projection:
                raise ConfigError("tie_output_embedding: expected False unless input_type='tokens' with a decoder "
                                  "projection (the projection reuses the token embedding), got True")
            if self.output_dim != self.input_dim or self.num_classes != self.input_num_tokens:
                raise ConfigError(f"tie_output_embedding: expected output_dim == input_dim ({self.input_dim}) and "
                                  f"n_classes == input_num_tokens ({self.input_num_tokens}), got output_dim="
                                  f"{self.output_dim}, n_classes={self.num_classes}")

    def _validate_fusion(self) -> None:
        """Check the types of ``fusion``, ``modality_dropout`` and ``modality_ensemble``
        (`gperc_core.model.fusion.fusion_spec` checks each modality's entry)."""
        fusion = self.fusion
        if fusion is not None and (not isinstance(fusion, Mapping) or not fusion):
            raise ConfigError(f"fusion: expected None or a table modality -> {{input_len, input_dim, input_type, "
                              f"input_num_tokens}}, got {fusion!r}")
        ensemble = self.modality_ensemble
        if not isinstance(ensemble, bool):
            raise ConfigError(f"modality_ensemble: expected true or false, got {ensemble!r}")
        if ensemble and (fusion is None or len(fusion) < 2):
            raise ConfigError(f"modality_ensemble: expected a fused model of at least two modalities, got fusion "
                              f"{list(fusion) if isinstance(fusion, Mapping) else fusion!r}")
        dropout = self.modality_dropout
        values = dropout.items() if isinstance(dropout, Mapping) else [("", dropout)]
        for modality, p in values:
            if modality and modality not in (fusion or {}):
                raise ConfigError(f"modality_dropout.{modality}: expected one of the fused modalities "
                                  f"{list(fusion or {})}")
            if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p < 1.0:
                raise ConfigError(f"modality_dropout: expected a number in [0, 1) or a table modality -> number, "
                                  f"got {dropout!r}")


    def _validate_stem(self) -> None:
        """Check ``input_stem`` and what it cannot be combined with."""
        if self.input_stem is None:
            return
        check_stem(self.input_stem, self.input_shape)
        for name, bad, why in (("fusion", self.fusion is not None, "None (each fused modality has its own grid)"),
                               ("decoder_reduction", self.decoder_reduction == "eot",
                                "not 'eot' (its queries are per input element)")):
            if bad:
                raise ConfigError(f"{name}: expected {why} with input_stem, got {getattr(self, name)!r}")


def _unknown(owner: str, key: object, fields: Mapping[str, Any]) -> str:
    """The message for an unknown field ``key``: the closest field, or the list of fields."""
    close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"fields: {', '.join(fields)}"
    return f"{key}: expected a field of {owner}, got an unknown name ({hint})"


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
