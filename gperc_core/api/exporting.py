"""`export`: a run's model as an ONNX or `torch.export` file (``gperc export``), and `open_exported`,
which loads such a file for `gperc_core.api.prediction.predict` after checking it is the run's model.

What the exported graph takes and what is dynamic: `gperc_core.interop.onnx`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXPORT_DIR = "export"
"""The run sub-folder exported files go to by default (``RUN/export/model.onnx``)."""


def default_export_path(run_dir: str | Path, fmt: str) -> Path:
    """Return where `export` writes ``fmt`` for ``run_dir`` by default: ``RUN/export/model.<fmt>``."""
    return Path(run_dir) / EXPORT_DIR / f"model.{fmt}"


def export(run_dir: str | Path, *, format: str = "onnx", out: str | Path | None = None,
           checkpoint: bool = False) -> dict[str, Any]:
    """Export the model of the run folder ``run_dir``.

    Args:
        run_dir: the run folder (written by `gperc_core.api.train` / ``gperc train``).
        format: ``"onnx"`` (run it with onnxruntime) or ``"pt2"`` (a `torch.export` program).
        out: the file to write; default ``RUN/export/model.<format>``.
        checkpoint: export the latest checkpoint instead of the final model.

    Returns:
        ``{"path": the written file (str), "format", "source": the folder the weights came from,
        "inputs": the graph's input names, "dynamic": {input name: the dynamic axes}}``. The graph
        takes an ``output_array`` input when the run's task has samples that bring their own decoder
        queries (graph nodes, pixel queries; `gperc_core.data.tasks.Task.sample_queries`).

    Raises:
        InputError: an unknown format, or the format's packages (``gperc-core[onnx]``) missing.
        ConfigError: the model has an option the exporter cannot express (named in the message).
        CheckpointError: ``run_dir`` is not a run folder or holds no model.
        TaskError: the run predates the record of its queries and its task's plugins are missing.
    """
    from gperc_core.api.runs import load_run_model
    from gperc_core.interop.onnx import check_exportable, dynamic_shapes, export_model, input_names

    model, source = load_run_model(run_dir, checkpoint=checkpoint, device="cpu")
    config = check_exportable(model, format)
    queries = run_sample_queries(run_dir)
    path = export_model(model, out if out is not None else default_export_path(run_dir, format), format, queries)
    names = input_names(config, queries)
    dynamic = {name: {axis: dim.__name__ for axis, dim in shape.items()}
               for name, shape in zip(names, dynamic_shapes(config, queries))}
    return {"path": str(path), "format": format, "source": str(source), "inputs": names, "dynamic": dynamic}


def run_sample_queries(run_dir: str | Path) -> bool:
    """Whether the task of ``run_dir`` has samples that bring their own decoder queries: its
    ``task.json`` says so, or (runs recorded before it did) the rebuilt task reads its training split."""
    from gperc_core.io.runs import read_task_file

    recorded = read_task_file(run_dir).get("sample_queries")
    if recorded is not None:
        return bool(recorded)
    from gperc_core.data.tasks import Task

    return Task.from_run(run_dir).sample_queries


def open_exported(path: str | Path, config: Any) -> Any:
    """Load the exported file ``path`` (`gperc_core.interop.onnx.ExportedModel`) and check that it was
    exported from a model of ``config`` (the run's `PerceiverConfig`); a file of another model is a
    `CheckpointError` naming the differing fields."""
    import json

    from gperc_core.errors import CheckpointError
    from gperc_core.interop.onnx import ExportedModel

    model = ExportedModel(path)
    ours = json.loads(json.dumps(config.to_dict()))  # as the file stores it (tuples become lists)
    diff = sorted(k for k in set(ours) | set(model.config) if ours.get(k) != model.config.get(k))
    if diff:
        detail = ", ".join(f"{k}: file {model.config.get(k)!r} vs run {ours.get(k)!r}" for k in diff[:5])
        raise CheckpointError(f"model: {str(path)!r} was exported from another model config ({detail}); "
                              f"re-export it with 'gperc export'")
    return model


__all__ = ["export", "open_exported", "run_sample_queries", "default_export_path", "EXPORT_DIR"]
