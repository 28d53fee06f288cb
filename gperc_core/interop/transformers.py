"""Import Hugging Face `transformers` Perceivers into gperc `Perceiver` models, exactly.

`from_transformers(model_or_dir)` takes a `transformers` Perceiver (an object, or a folder written by
``save_pretrained``) and returns a gperc `Perceiver` that computes the same function: the same logits
(to float rounding) on the same inputs in eval mode. What cannot be represented exactly is refused
with a `ConfigError` naming the field and the reason; nothing is converted approximately.

Supported: ``PerceiverModel`` (no preprocessor, the text preprocessor, or an image preprocessor with
``prep_type`` "pixels" + Fourier features or "conv1x1" + trainable positions; no decoder, a
classification decoder or a basic decoder with trainable queries), ``PerceiverForMaskedLM``,
``PerceiverForSequenceClassification``, ``PerceiverForImageClassificationLearned`` and
``PerceiverForImageClassificationFourier``.

How the layouts differ: a gperc model reads images channels-last, flattened row-major
(``[b, H*W, C]``; `image_to_gperc` turns a ``[b, C, H, W]`` batch into that); it has no key bias
(a key bias adds one constant to every score of a query row, which softmax removes, so dropping it
is exact); a projection of a trainable position table is folded into the table; and a gperc
``dropout`` stands for the attention-probability dropout of `transformers` (gperc also drops out
attention outputs and MLPs while training, so fine-tuning regularises slightly differently).

Loading a folder never unpickles: only ``*.safetensors`` weights are read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import CheckpointError, ConfigError
from gperc_core.model.perceiver import Perceiver

SUPPORTED_CLASSES: tuple[str, ...] = (
    "PerceiverModel", "PerceiverForMaskedLM", "PerceiverForSequenceClassification",
    "PerceiverForImageClassificationLearned", "PerceiverForImageClassificationFourier",
)
"""`transformers` classes `from_transformers` converts."""

LAYER_NORM_EPS = 1e-5
"""The epsilon of gperc's (and `transformers`' Perceiver) layer norms."""


def from_transformers(model_or_dir: Any, *, image_size: int | tuple[int, int] | None = None) -> Perceiver:
    """Return a gperc `Perceiver` computing what the `transformers` Perceiver ``model_or_dir`` computes.

    ``model_or_dir`` is a `transformers` model object or a folder written by ``save_pretrained`` (with
    ``model.safetensors``). ``image_size`` (``H`` or ``(H, W)``) sets the image size of a Fourier image
    model (whose `transformers` form accepts any size; a gperc model fixes it), by default the
    `transformers` config's ``image_size``. Raises `ConfigError` naming the field when the model cannot
    be represented exactly, `CheckpointError` when a folder's weights cannot be read safely.
    """
    model = load_transformers_model(model_or_dir) if isinstance(model_or_dir, (str, Path)) else model_or_dir
    config, state = convert_transformers(model, image_size=image_size)
    gperc_model = Perceiver(config)
    gperc_model.load_state_dict(state, strict=True)
    return gperc_model.eval()


def image_to_gperc(pixels: torch.Tensor) -> torch.Tensor:
    """Turn a ``[b, C, H, W]`` image batch (the `transformers` layout) into gperc's ``[b, H*W, C]``."""
    if pixels.dim() != 4:
        raise ConfigError(f"pixels: expected a [batch, channels, height, width] tensor, got shape {list(pixels.shape)}")
    b, c = pixels.shape[:2]
    return pixels.permute(0, 2, 3, 1).reshape(b, -1, c)


# --------------------------------------------------------------------------- loading a folder
def load_transformers_model(directory: str | Path) -> nn.Module:
    """Build the `transformers` model saved in ``directory`` (its ``config.json`` names the class)
    from safetensors weights only; a folder with only pickled weights is refused with how to convert it."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{directory}: expected a transformers model folder with config.json, found none")
    try:
        raw = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from exc
    if raw.get("model_type") != "perceiver":
        raise ConfigError(f"model_type: expected 'perceiver' in {config_path}, got {raw.get('model_type')!r}")
    architectures = raw.get("architectures") or ["PerceiverModel"]
    name = architectures[0]
    if name not in SUPPORTED_CLASSES:
        raise ConfigError(f"architectures: expected one of {list(SUPPORTED_CLASSES)}, got {name!r} "
                          "(gperc cannot represent this transformers Perceiver exactly)")
    if not (any(directory.glob("*.safetensors")) or (directory / "model.safetensors.index.json").is_file()):
        pickled = sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f"found only {pickled}" if pickled else "found no weights"
        raise CheckpointError(
            f"{directory}: expected safetensors weights (model.safetensors), {found}. gperc never unpickles "
            "weights; convert them once in a trusted environment with transformers: "
            f"`{name}.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)`")
    transformers = _transformers()
    cls = getattr(transformers, name)
    return cls.from_pretrained(str(directory), use_safetensors=True).eval()


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("transformers: expected the package to be installed to read a transformers model "
                          "folder (pip install 'gperc-core[transformers]'), got ImportError") from exc
    return transformers


# --------------------------------------------------------------------------- conversion
def convert_transformers(model: Any, *, image_size: int | tuple[int, int] | None = None
                         ) -> tuple[PerceiverConfig, dict[str, torch.Tensor]]:
    """Return ``(config, state_dict)`` of the gperc `Perceiver` equivalent to the `transformers` model.

    Raises `ConfigError` naming the field and the reason for anything gperc cannot represent exactly.
    """
    name = type(model).__name__
    if name not in SUPPORTED_CLASSES:
        raise ConfigError(f"model: expected one of {list(SUPPORTED_CLASSES)}, got {name} "
                          "(gperc cannot represent it exactly)")
    hf = model.config
    base = model if name == "PerceiverModel" else model.perceiver
    if getattr(hf, "hidden_act", "gelu") != "gelu":
        raise ConfigError(f"hidden_act: expected 'gelu' (gperc's MLPs use exact GELU), got {hf.hidden_act!r}")
    if base.output_postprocessor is not None:
        raise ConfigError(f"output_postprocessor: expected None, got {type(base.output_postprocessor).__name__} "
                          "(gperc has no output postprocessors)")
    fields: dict[str, Any] = {"dropout": float(hf.attention_probs_dropout_prob), "seed": 0}
    state: dict[str, torch.Tensor] = {}
    prep_state = _convert_preprocessor(base, fields, image_size)
    state.update(prep_state)
    state.update(_convert_encoder(base, fields))
    state.update(_convert_decoder(base, fields))
    if name == "PerceiverForMaskedLM":
        if fields.get("n_classes") is not None or fields["output_dim"] != fields["input_dim"]:
            raise ConfigError("decoder: expected query width == d_model for the masked-LM embedding decoder")
        fields.update(tie_output_embedding=True, n_classes=int(hf.vocab_size), decoder_projection=True)
        state["decoder.output_bias"] = model.embedding_decoder.bias.detach().clone()
    config = PerceiverConfig(**fields)
    return config, {k: v.detach().to(torch.float32).clone().contiguous() for k, v in state.items()}


def _convert_preprocessor(base: Any, fields: dict[str, Any], image_size: Any) -> dict[str, torch.Tensor]:
    """Fill the input fields from ``base.input_preprocessor``; return the embedding weights."""
    hf = base.config
    prep = base.input_preprocessor
    kind = type(prep).__name__ if prep is not None else None
    if prep is None:
        fields.update(input_type="raw", input_dim=int(hf.d_model), input_pos_enc="none",
                      input_len=int(hf.max_position_embeddings))
        return {}
    if kind == "PerceiverTextPreprocessor":
        fields.update(input_type="tokens", input_num_tokens=int(hf.vocab_size), input_dim=int(hf.d_model),
                      input_len=int(hf.max_position_embeddings), input_pos_enc="trainable")
        return {"embeddings.input_embedding.weight": prep.embeddings.weight,
                "embeddings.input_pos": prep.position_embeddings.weight}
    if kind != "PerceiverImagePreprocessor":
        raise ConfigError(f"input_preprocessor: expected None, PerceiverTextPreprocessor or PerceiverImagePreprocessor, "
                          f"got {kind} (gperc cannot represent it exactly)")
    return _convert_image_preprocessor(prep, hf, fields, image_size)


def _convert_image_preprocessor(prep: Any, hf: Any, fields: dict[str, Any], image_size: Any) -> dict[str, torch.Tensor]:
    if prep.spatial_downsample != 1 or prep.temporal_downsample != 1:
        raise ConfigError(f"spatial_downsample: expected 1 (no downsampling), got {prep.spatial_downsample} "
                          f"(temporal {prep.temporal_downsample}); gperc reads every pixel")
    if isinstance(prep.conv_after_patches, nn.Linear):
        raise ConfigError("conv_after_patching: expected False, got True (gperc has no patch convolution)")
    state: dict[str, torch.Tensor] = {}
    channels = int(prep.in_channels)
    if prep.prep_type == "conv1x1":
        conv = prep.convnet_1x1
        state["embeddings.input_projection.weight"] = conv.weight[:, :, 0, 0]
        state["embeddings.input_projection.bias"] = conv.bias
        fields["input_projection"] = int(prep.out_channels)
    elif prep.prep_type != "pixels":
        raise ConfigError(f"prep_type: expected 'pixels' or 'conv1x1', got {prep.prep_type!r} "
                          "(gperc has no convolutional stem or patch preprocessor)")
    fields.update(input_type="raw", input_dim=channels)
    if prep.position_encoding_type == "trainable":
        table = prep.position_embeddings.position_embeddings.detach()
        projection = prep.positions_projection
        if isinstance(projection, nn.Linear):  # a learned map of a learned table: fold it (exact)
            table = projection(table).detach()
        side = round(table.shape[0] ** 0.5)
        shape = [side, side] if side * side == table.shape[0] else [int(table.shape[0])]
        fields.update(input_len=int(table.shape[0]), input_pos_enc="trainable")
        if len(shape) == 2:
            fields["input_pos_shape"] = shape
        if prep.concat_or_add_pos == "concat":
            fields["input_pos_dim"] = int(table.shape[1])
        elif table.shape[1] != (fields.get("input_projection") or channels):
            raise ConfigError(f"concat_or_add_pos: 'add' needs a position table as wide as the input, got "
                              f"{table.shape[1]} channels for an input of {fields.get('input_projection') or channels}")
        state["embeddings.input_pos"] = table
        return state
    encoding = prep.position_embeddings
    if prep.concat_or_add_pos != "concat":
        raise ConfigError(f"concat_or_add_pos: expected 'concat' with Fourier features, got {prep.concat_or_add_pos!r} "
                          "(gperc concatenates Fourier features)")
    if isinstance(prep.positions_projection, nn.Linear):
        raise ConfigError(f"project_pos_dim: expected -1 (no projection) with Fourier features, got "
                          f"{prep.project_pos_dim} (gperc has no learned projection of fixed Fourier features)")
    size = image_size if image_size is not None else hf.image_size
    shape = [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]
    if len(shape) != len(encoding.max_resolution):
        raise ConfigError(f"image_size: expected {len(encoding.max_resolution)} axes (the Fourier max_resolution "
                          f"{list(encoding.max_resolution)}), got {shape}")
    if any(r / 2 < 1 for r in encoding.max_resolution):
        raise ConfigError(f"max_resolution: expected values >= 2, got {list(encoding.max_resolution)}")
    fields.update(input_len=shape[0] * shape[1], input_pos_shape=shape, input_pos_enc="fourier",
                  fourier_num_bands=int(encoding.num_bands),
                  fourier_max_resolution=[float(r) for r in encoding.max_resolution],
                  fourier_concat_pos=bool(encoding.concat_pos), fourier_sine_only=bool(encoding.sine_only))
    return state


def _check_norm(norm: Any, where: str) -> None:
    if not isinstance(norm, nn.LayerNorm) or not norm.elementwise_affine or abs(norm.eps - LAYER_NORM_EPS) > 1e-12:
        raise ConfigError(f"{where}: expected an affine LayerNorm with eps={LAYER_NORM_EPS}, got {norm!r}")


def _layer(layer: Any, prefix: str, *, cross: bool, where: str) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Map one `transformers` ``PerceiverLayer`` onto a gperc `Block` at ``prefix``; return the state and
    its widths (``heads``, ``qk``, ``v``, ``ffw``, ``residual``)."""
    attn = layer.attention
    self_attn = attn.self
    _check_norm(self_attn.layernorm1, f"{where}.layernorm1")
    _check_norm(layer.layernorm, f"{where}.layernorm")
    if cross:
        _check_norm(self_attn.layernorm2, f"{where}.layernorm2")
    elif not isinstance(self_attn.layernorm2, nn.Identity):
        raise ConfigError(f"{where}.layernorm2: expected none in a self-attention layer")
    state = {
        f"{prefix}.norm_q.weight": self_attn.layernorm1.weight, f"{prefix}.norm_q.bias": self_attn.layernorm1.bias,
        f"{prefix}.attention.query.weight": self_attn.query.weight,
        f"{prefix}.attention.query.bias": self_attn.query.bias,
        # the key bias is dropped: it adds q.b_k to every score of a query row, which softmax removes
        f"{prefix}.attention.key.weight": self_attn.key.weight,
        f"{prefix}.attention.value.weight": self_attn.value.weight,
        f"{prefix}.attention.value.bias": self_attn.value.bias,
        f"{prefix}.attention.out.weight": attn.output.dense.weight,
        f"{prefix}.attention.out.bias": attn.output.dense.bias,
        f"{prefix}.norm_mlp.weight": layer.layernorm.weight, f"{prefix}.norm_mlp.bias": layer.layernorm.bias,
        f"{prefix}.mlp.fc1.weight": layer.mlp.dense1.weight, f"{prefix}.mlp.fc1.bias": layer.mlp.dense1.bias,
        f"{prefix}.mlp.fc2.weight": layer.mlp.dense2.weight, f"{prefix}.mlp.fc2.bias": layer.mlp.dense2.bias,
    }
    if cross:
        state[f"{prefix}.norm_kv.weight"] = self_attn.layernorm2.weight
        state[f"{prefix}.norm_kv.bias"] = self_attn.layernorm2.bias
    act = layer.mlp.intermediate_act_fn
    if type(act).__name__ not in ("GELUActivation",) or getattr(act, "act", torch.nn.functional.gelu) is not \
            torch.nn.functional.gelu:
        raise ConfigError(f"{where}.mlp: expected the exact GELU activation, got {act!r}")
    widths = {"heads": int(self_attn.num_heads), "qk": int(self_attn.qk_channels), "v": int(self_attn.v_channels),
              "ffw": int(layer.mlp.dense1.out_features), "residual": bool(attn.use_query_residual)}
    return state, widths


def _convert_encoder(base: Any, fields: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Fill the latent, encoder and processor fields; return their weights."""
    hf = base.config
    encoder = base.encoder
    d = int(hf.d_latents)
    state, cross = _layer(encoder.cross_attention, "encoder.block", cross=True, where="encoder.cross_attention")
    state["embeddings.latent"] = base.embeddings.latents
    fields.update(latent_len=int(hf.num_latents), latent_dim=d, cross_heads=cross["heads"],
                  cross_qk_channels=cross["qk"], cross_v_channels=cross["v"], ffw_latent=cross["ffw"],
                  encoder_residual=cross["residual"])
    blocks = len(encoder.self_attends)
    repeats = int(hf.num_blocks)
    fields["num_layers"] = blocks * repeats
    if blocks == 0 or repeats == 0:
        fields["num_layers"] = 0
        fields["self_heads"] = None
        return state
    if repeats > 1 and blocks == 1:
        fields["share_weights"] = True
    elif repeats > 1:
        fields["processor_blocks"] = blocks
    self_widths = []
    for i, layer in enumerate(encoder.self_attends):
        layer_state, widths = _layer(layer, f"processors.{i}.block", cross=False, where=f"encoder.self_attends.{i}")
        if not widths["residual"]:
            raise ConfigError(f"encoder.self_attends.{i}.use_query_residual: expected True, got False")
        state.update(layer_state)
        self_widths.append(widths)
    first = self_widths[0]
    for i, widths in enumerate(self_widths):
        if widths != first:
            raise ConfigError(f"encoder.self_attends.{i}: expected the widths of layer 0 {first}, got {widths}")
    if first["v"] != d:
        raise ConfigError(f"v_channels: expected d_latents={d} in self-attention, got {first['v']}")
    fields.update(self_heads=first["heads"], self_qk_channels=first["qk"], self_v_channels=first["v"],
                  self_widening=first["ffw"] / d)
    if round(d * fields["self_widening"]) != first["ffw"]:  # pragma: no cover - ffw is d * an integer factor
        raise ConfigError(f"self_attention_widening_factor: expected an MLP width that is a multiple of {d}")
    return state


def _convert_decoder(base: Any, fields: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Fill the decoder fields from ``base.decoder``; return its weights (``encoder_only`` without one)."""
    decoder = base.decoder
    kind = type(decoder).__name__ if decoder is not None else None
    if decoder is None:
        fields.update(encoder_only=True, decoder_projection=False, output_dim=fields["latent_dim"], output_len=1,
                      decoder_heads=1)
        return {}
    if kind == "PerceiverClassificationDecoder":
        basic, reduction = decoder.decoder, "first"
    elif kind == "PerceiverBasicDecoder":
        basic, reduction = decoder, None
    else:
        raise ConfigError(f"decoder: expected None, PerceiverClassificationDecoder or PerceiverBasicDecoder, "
                          f"got {kind} (gperc cannot represent it exactly)")
    if basic.position_encoding_type != "trainable":
        raise ConfigError(f"decoder.position_encoding_type: expected 'trainable', got {basic.position_encoding_type!r}")
    if basic.concat_preprocessed_input:
        raise ConfigError("decoder.concat_preprocessed_input: expected False, got True (gperc queries do not "
                          "carry the input)")
    if basic.position_encoding_only:
        raise ConfigError("decoder.position_encoding_only: expected False, got True")
    queries = basic.output_position_encodings.position_embeddings.detach()
    if isinstance(basic.positions_projection, nn.Linear):
        queries = basic.positions_projection(queries).detach()
    state, widths = _layer(basic.decoding_cross_attention, "decoder.block", cross=True,
                           where="decoder.decoding_cross_attention")
    state["embeddings.output_query"] = queries
    fields.update(output_len=int(queries.shape[0]), output_dim=int(queries.shape[1]), decoder_heads=widths["heads"],
                  decoder_qk_channels=widths["qk"], decoder_v_channels=widths["v"], ffw_output=widths["ffw"],
                  decoder_residual=widths["residual"], decoder_reduction=reduction, output_pos_enc="trainable")
    if isinstance(basic.final_layer, nn.Linear):
        state["decoder.projection.weight"] = basic.final_layer.weight
        state["decoder.projection.bias"] = basic.final_layer.bias
        fields.update(decoder_projection=True, n_classes=int(basic.final_layer.out_features))
    else:
        fields["decoder_projection"] = False
    return state
