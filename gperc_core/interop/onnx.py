"""Export a gperc model to ONNX (``.onnx``) or `torch.export` (``.pt2``), and run an exported file.

The exported graph is the fp32 eval-mode ``forward(input_array, attention_mask)`` of the model with
its own output queries, or, exported with ``output_array=True`` (a task whose samples bring their own
decoder queries: graph nodes, pixel queries), ``forward(input_array, attention_mask, output_array)``.
What is dynamic:

- the batch axis, always;
- ``m`` (axis 1 of ``input_array`` and ``attention_mask``) of a single `Perceiver`, in
  ``[1, input_len]``, like the eager model (trainable and sinusoid positions are sliced to ``m``,
  Fourier features are the first ``m`` rows of their fixed grid);
- ``o`` (axis 1 of ``output_array``, when the graph takes one), in ``[1, 65536]``, except with
  ``decoder_reduction="eot"`` (``o`` is fixed to ``output_len`` like ``m``);
- not ``m`` with ``decoder_reduction="eot"`` (it reads the query at the last unmasked position, so
  ``m`` is fixed to ``output_len``), nor with ``input_len=1``, nor with an ``input_stem`` (its
  convolutions read a fixed grid), nor a fused multimodal model's per-modality lengths (each modality is fixed to its
  ``input_len``, as `ModalityFusion` requires).

The mask is always an input (bool, True = attend); `ExportedModel` passes all-True when the caller
gives none, which is the same attention as no mask. A fused model takes one
``input_array.<modality>`` and one ``attention_mask.<modality>`` per modality, in config order
(then ``output_array``, when the graph takes one).

The file carries the model config (ONNX ``metadata_props`` / a ``.pt2`` extra file ``gperc.json``), so
`ExportedModel` knows the inputs and `gperc predict --model FILE` can refuse a file of another model.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from gperc_core.config.perceiver import PerceiverConfig
from gperc_core.errors import CheckpointError, ConfigError, InputError, describe
from gperc_core.model.sentinels import resolve_mask, resolve_output_array

EXPORT_FORMATS: tuple[str, ...] = ("onnx", "pt2")
"""The formats `export_model` writes: ONNX (run by onnxruntime) and `torch.export` programs."""

META_KEY = "gperc"
"""The metadata key (ONNX) / extra file stem (``.pt2``) holding ``{"config": ..., "inputs": [...]}``."""

OPSET = 18
"""The ONNX opset of exported files."""

MAX_QUERIES = 1 << 16
"""The largest number of per-sample output queries ``o`` an exported graph with ``output_array`` takes."""


def _fused(config: PerceiverConfig) -> dict[str, dict[str, Any]] | None:
    """The ``fusion`` table of a multimodal config, or ``None`` for a single Perceiver."""
    spec = config.get("fusion")
    return {m: dict(e) for m, e in spec.items()} if spec else None


def input_names(config: PerceiverConfig, output_array: bool = False) -> list[str]:
    """The exported graph's input names, in order: ``input_array``, ``attention_mask`` (a fused model:
    ``input_array.<modality>``, ``attention_mask.<modality>`` for each modality), then
    ``output_array`` when the graph takes per-sample queries."""
    spec = _fused(config)
    names = (["input_array", "attention_mask"] if spec is None
             else [f"{kind}.{m}" for m in spec for kind in ("input_array", "attention_mask")])
    return names + ["output_array"] if output_array else names


def check_exportable(model: nn.Module, fmt: str) -> PerceiverConfig:
    """Return ``model``'s config if the ``fmt`` exporter can express the model; raise `InputError` for
    an unknown ``fmt`` and `ConfigError` naming what cannot be exported.

    Every `PerceiverConfig` option exports (tests/test_export.py covers the position encodings,
    token inputs, shared weights, head/width options, every reduction and fused models); what
    cannot is a pipeline stage (a model cut by `gperc_core.parallel.pipeline`, missing blocks)."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"format: expected one of {list(EXPORT_FORMATS)}, got {fmt!r}")
    config = getattr(model, "config", None)
    if not isinstance(config, PerceiverConfig):
        raise ConfigError(f"model.config: expected a PerceiverConfig, got {type(config).__name__}")
    members = getattr(model, "members", None)
    if members is not None:  # an ensemble (gperc_core.model.ensemble): the graph averages its members' probabilities
        for member in members:
            check_exportable(member, fmt)
        return config
    perceiver = getattr(model, "perceiver", model)
    missing = [name for name in ("encoder", "decoder") if getattr(perceiver, name, None) is None]
    if getattr(model, "perceiver", None) is not None and model.projections is None:
        missing.append("projections")
    if missing:
        raise ConfigError(f"model: a pipeline stage cannot be exported (it lacks {missing}); expected a whole "
                          f"model, as a run folder's model.safetensors holds")
    return config


class _GraphForward(nn.Module):
    """The module that is traced: ``forward(*inputs)`` over `input_names` calls the model with its own
    output queries, or with the last input as ``output_array`` (``queries``). A fused model's flat
    inputs are regrouped into the dicts `ModalityFusion` takes."""

    def __init__(self, model: nn.Module, modalities: list[str] | None, queries: bool) -> None:
        super().__init__()
        self.model, self.modalities, self.queries = model, modalities, queries

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        output_array = inputs[-1] if self.queries else None
        if self.modalities is None:
            return self.model(inputs[0], inputs[1], output_array)
        arrays = {m: inputs[2 * i] for i, m in enumerate(self.modalities)}
        masks = {m: inputs[2 * i + 1] for i, m in enumerate(self.modalities)}
        return self.model(arrays, masks, output_array)


def _traced_queries(config: PerceiverConfig) -> int:
    """The number of queries ``o`` of the traced ``output_array``: ``output_len`` with ``eot`` (tied to
    ``m``), else at least 2 (the exporters specialise a dynamic axis traced at size 1)."""
    return int(config.output_len) if config.decoder_reduction == "eot" else max(2, int(config.output_len))


def example_inputs(config: PerceiverConfig, batch: int = 2, output_array: bool = False) -> tuple[torch.Tensor, ...]:
    """Inputs the exporter traces with (in `input_names` order): random data of the longest length
    (``output_len`` with ``eot``), masks with a few masked positions, and random queries
    ``[batch, o, output_dim]`` with ``output_array``."""
    generator = torch.Generator().manual_seed(0)
    spec = _fused(config)
    entries = spec.values() if spec is not None else [
        {"input_len": config.output_len if config.decoder_reduction == "eot" else config.input_len,
         "input_dim": config.input_dim, "input_type": config.input_type, "input_num_tokens": config.input_num_tokens}]
    out: list[torch.Tensor] = []
    for e in entries:
        m = int(e["input_len"])
        if e.get("input_type") == "tokens":
            out.append(torch.randint(0, int(e["input_num_tokens"]), (batch, m), generator=generator))
        else:
            out.append(torch.randn(batch, m, int(e["input_dim"]), generator=generator))
        mask = torch.ones(batch, m, dtype=torch.bool)
        mask[:, m // 2 + 1:] = torch.rand(batch, m - m // 2 - 1, generator=generator) > 0.5
        out.append(mask)
    if output_array:
        out.append(torch.randn(batch, _traced_queries(config), int(config.output_dim), generator=generator))
    return tuple(out)


def dynamic_shapes(config: PerceiverConfig, output_array: bool = False) -> tuple[dict[int, Any], ...]:
    """The `torch.export` dynamic axes of each input (see the module doc for what is dynamic)."""
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    eot = config.decoder_reduction == "eot"
    if _fused(config) is not None or eot or config.input_stem or int(config.input_len) < 2:
        shapes = [{0: batch} for _ in input_names(config)]
    else:
        length = torch.export.Dim("m", min=1, max=int(config.input_len))
        shapes = [{0: batch, 1: length}, {0: batch, 1: length}]
    if output_array:
        shapes.append({0: batch} if eot else {0: batch, 1: torch.export.Dim("o", min=1, max=MAX_QUERIES)})
    return tuple(shapes)


def _metadata(config: PerceiverConfig, output_array: bool) -> str:
    return json.dumps({"config": config.to_dict(), "inputs": input_names(config, output_array)})


def export_model(model: nn.Module, path: str | Path, fmt: str = "onnx", output_array: bool = False) -> Path:
    """Write ``model`` (a `Perceiver`, `ModalityFusion` or `gperc_core.model.ensemble.Ensemble`) to ``path`` in
    ``fmt`` (`EXPORT_FORMATS`), traced in fp32 eval mode on the CPU; returns the path. With ``output_array``
    the graph takes the decoder queries as its last input (``[batch, o, output_dim]``, for tasks whose samples
    bring their own), else it reads out with the model's own.

    Raises `ConfigError` naming an option the exporter cannot express (`check_exportable`) and
    `InputError` for an unknown format or a missing ``onnx`` / ``onnxscript`` package."""
    import copy

    config = check_exportable(model, fmt)
    traced = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    spec = _fused(config)
    wrapper = _GraphForward(traced, list(spec) if spec is not None else None, output_array).eval()
    args = example_inputs(config, output_array=output_array)
    shapes = (dynamic_shapes(config, output_array),)  # one entry: forward's *inputs
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "pt2":
        program = _traced(config, fmt, lambda: torch.export.export(wrapper, args, dynamic_shapes=shapes))
        torch.export.save(program, str(path), extra_files={f"{META_KEY}.json": _metadata(config, output_array)})
        return path
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise InputError(f"format: 'onnx' needs the packages onnx and onnxscript (pip install 'gperc-core[onnx]'); "
                         f"{exc.name} is not installed") from exc
    program = _traced(config, fmt, lambda: torch.onnx.export(
        wrapper, args, dynamo=True, dynamic_shapes=shapes, opset_version=OPSET,
        input_names=input_names(config, output_array),
        output_names=["logits"], verbose=False))
    program.optimize()
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, _metadata(config, output_array)
    from gperc_core.io.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, proto.SerializeToString())
    return path


def _traced(config: PerceiverConfig, fmt: str, trace: Any) -> Any:
    """Run the exporter ``trace()``; a failure is a `ConfigError` listing the config's non-default
    options (one of them is what the exporter could not express)."""
    import contextlib
    import io

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return trace()
    except Exception as exc:  # the exporters raise many types; the cause is chained
        defaults = PerceiverConfig.field_defaults()
        options = {k: v for k, v in config.to_dict().items() if defaults.get(k, object()) != v}
        raise ConfigError(f"format {fmt!r}: the exporter could not express this model (options {options}); "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


class ExportedModel:
    """An exported file (``.onnx`` through onnxruntime, ``.pt2`` through `torch.export.load`) called like
    the model: ``model(input_array, attention_mask=None, output_array=None)`` returns the logits as a
    CPU float tensor. ``config`` is the exported model's config as a dict; ``takes_queries`` says
    whether the graph takes ``output_array`` (then it is required) or reads out with its own queries
    (then it must be None)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"model: expected an exported .onnx or .pt2 file, found no file {str(self.path)!r}")
        suffix = self.path.suffix
        if suffix == ".onnx":
            try:
                import onnxruntime
            except ImportError as exc:
                raise InputError("model: running an .onnx file needs onnxruntime (pip install 'gperc-core[onnx]')") from exc
            self._session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            meta = self._session.get_modelmeta().custom_metadata_map.get(META_KEY)
        elif suffix == ".pt2":
            extra = {f"{META_KEY}.json": ""}
            with warnings.catch_warnings():  # torch warns that the loaded buffers are read-only
                warnings.simplefilter("ignore", UserWarning)
                self._program = torch.export.load(str(self.path), extra_files=extra).module()
            meta = extra[f"{META_KEY}.json"] or None
        else:
            raise InputError(f"model: expected a file ending in .onnx or .pt2, got {str(self.path)!r}")
        if not meta:
            raise CheckpointError(f"{self.path}: expected a file written by 'gperc export' (with gperc metadata), "
                                  f"found none")
        data = json.loads(meta)
        self.config: dict[str, Any] = dict(data["config"])
        self.inputs: list[str] = list(data["inputs"])
        self.modalities = list(self.config.get("fusion") or [])
        self.takes_queries = "output_array" in self.inputs

    def _flat(self, input_array: Any, attention_mask: Any) -> list[torch.Tensor]:
        """The graph inputs in order (all-True masks where none is given)."""
        if not self.modalities:
            arrays, masks = {"": input_array}, {"": resolve_mask(attention_mask)}
            order = [""]
        else:
            if not isinstance(input_array, Mapping) or set(input_array) != set(self.modalities):
                raise InputError(f"input_array: expected a dict with one array per modality {self.modalities}, "
                                 f"got {type(input_array).__name__}")
            arrays, masks, order = input_array, dict(attention_mask or {}), self.modalities
        flat = []
        for key in order:
            x = torch.as_tensor(arrays[key]).cpu()
            x = x.float() if x.dtype.is_floating_point else x.long()
            mask = masks.get(key)
            flat += [x, torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else torch.as_tensor(mask).cpu() != 0]
        return flat

    def __call__(self, input_array: Any, attention_mask: Any = None, output_array: Any = None) -> torch.Tensor:
        queries = resolve_output_array(output_array)
        if queries is not None and not self.takes_queries:
            raise InputError(f"output_array: this exported model reads out with its own output queries; expected None, "
                             f"got {describe(queries)}")
        if queries is None and self.takes_queries:
            raise InputError(f"output_array: this exported model takes per-sample queries; expected a float tensor "
                             f"[batch, o, {self.config.get('output_dim')}], got None")
        flat = self._flat(input_array, attention_mask)
        if queries is not None:
            flat.append(torch.as_tensor(queries).cpu().float())
        if hasattr(self, "_session"):
            feeds = {name: t.numpy() for name, t in zip(self.inputs, flat)}
            return torch.from_numpy(self._session.run(None, feeds)[0])
        with torch.no_grad():
            return self._program(*flat)

    def eval(self) -> "ExportedModel":
        """No-op (an exported graph is always in eval mode); returns self."""
        return self


__all__ = ["EXPORT_FORMATS", "ExportedModel", "export_model", "check_exportable", "input_names", "example_inputs",
           "dynamic_shapes", "META_KEY", "OPSET", "MAX_QUERIES"]
