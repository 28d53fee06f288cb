"""`PerceiverConfig`: every hyper-parameter of a Perceiver, with gperc's field names.

The config validates itself on construction and on `validate()`, keeps unknown keyword
arguments as attributes (gperc did), allows `config["name"]` access, and round-trips through
JSON and TOML so that checkpoints and task cards can carry it.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any, Iterator

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
}

_INT_FIELDS = ("input_len", "input_dim", "latent_len", "latent_dim", "output_len", "output_dim",
               "ffw_latent", "ffw_output", "num_heads", "fourier_num_bands")


class PerceiverConfig:
    """Hyper-parameters of a `Perceiver`; gperc's fields plus position encodings, head counts
    and MLP widening per attention kind, and processor weight sharing.

    Unknown keyword arguments are kept as attributes and survive serialisation.
    """

    def __init__(self, **kwargs: Any) -> None:
        values = dict(_DEFAULTS)
        values.update(kwargs)
        for key, value in values.items():
            if isinstance(value, tuple):
                value = list(value)
            object.__setattr__(self, key, value)
        self.validate()

    # ----------------------------------------------------------------- mapping access
    def __getitem__(self, key: str) -> Any:
        if not hasattr(self, key):
            raise KeyError(f"PerceiverConfig has no field {key!r}")
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
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
        """Return a validated copy with ``changes`` applied."""
        values = self.to_dict()
        values.update(changes)
        return PerceiverConfig(**values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PerceiverConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"PerceiverConfig({body})"

    # ----------------------------------------------------------------- serialisation
    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        """Return the config as JSON text, also writing it to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, sort_keys=False)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "PerceiverConfig":
        """Build a config from JSON text or from the path of a JSON file."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError(f"config JSON: expected an object, got {type(data).__name__}")
        return cls(**data)

    def to_toml(self, path: str | Path | None = None) -> str:
        """Return the config as TOML text (``None`` fields are left out), also writing it to ``path``."""
        import tomli_w

        text = tomli_w.dumps({k: v for k, v in self.to_dict().items() if v is not None})
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_toml(cls, text_or_path: str | Path) -> "PerceiverConfig":
        """Build a config from TOML text or from the path of a TOML file (missing keys take defaults)."""
        text = str(text_or_path)
        if "=" not in text:
            text = Path(text_or_path).read_text()
        return cls(**tomllib.loads(text))

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
    def fourier_channels(self) -> int:
        """Channels the Fourier position features add to each input element."""
        return len(self.input_shape) * (2 * int(self.fourier_num_bands) + 1)

    @property
    def input_embed_dim(self) -> int:
        """Channel width the encoder reads: ``input_dim`` plus Fourier features when they are concatenated."""
        extra = self.fourier_channels if self.input_pos_enc == "fourier" else 0
        return int(self.input_dim) + extra

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
        if self.latent_dim % self.n_cross_heads:
            raise ConfigError(
                f"latent_dim: expected a multiple of the cross-attention heads ({self.n_cross_heads}), "
                f"got {self.latent_dim}")
        if self.latent_dim % self.n_self_heads:
            raise ConfigError(
                f"latent_dim: expected a multiple of the self-attention heads ({self.n_self_heads}), "
                f"got {self.latent_dim}")
        if self.output_dim % self.n_decoder_heads:
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
        if not isinstance(self.pos_init_std, (int, float)) or self.pos_init_std < 0:
            raise ConfigError(f"pos_init_std: expected a number >= 0, got {self.pos_init_std!r}")
        for name in ("decoder_residual", "decoder_projection", "share_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        return self


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
