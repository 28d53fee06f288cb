"""`predict`: a trained run's predictions for raw samples or files (``gperc predict``).

What each item of ``samples_or_files`` means:

- a ``str`` or `os.PathLike`: a file of the task's modality (read with the modality plugin's
  ``ModalitySpec.read_file``); a multimodal task needs a mapping instead;
- a mapping modality -> value, with exactly the task's modalities: each value is a file when it is
  an `os.PathLike` (e.g. `pathlib.Path`), otherwise a raw sample (so ``{"text": "hello"}`` is raw text);
- anything else: one raw sample of the task's modality (e.g. a numpy array).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from gperc_core.errors import InputError


def predict(run_dir: str | Path, samples_or_files: Sequence[Any], *, modality: str | None = None,
            device: str = "auto", pm: Any = None, top_k: int = 1, checkpoint: bool = False,
            model: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Predict with the run folder ``run_dir`` for each item of ``samples_or_files`` (see the module doc).

    Args:
        run_dir: the run folder (written by `gperc_core.api.train` / ``gperc train``).
        samples_or_files: raw samples, files, or mappings modality -> sample or file.
        modality: the modality of non-mapping items; default the task's only modality (it must be
            one of the task's modalities).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        pm: the plugin manager to rebuild the task with; default the installed plugins.
        top_k: how many classes to return per item (classification).
        checkpoint: predict with the latest checkpoint instead of the final model.
        model: an exported ``.onnx`` / ``.pt2`` file of the run's model (``gperc export``) to predict
            with instead (onnxruntime / `torch.export`, on the CPU).

    Returns:
        One dict per item, in order: ``{"input": the file path(s) as given (str; for a mapping
        ``"modality=path,..."``) or None for a raw sample, "predictions": ...}``. For a classification
        task ``predictions`` is the ``top_k`` best ``{"class": id, "label": class name (or the id as
        str), "probability": rounded to 4 places}``, best first; for a dense task it is the list of
        predicted class ids, one per output position.

    Raises:
        InputError: a bad ``top_k``, ``modality`` or item, or a missing file.
        CheckpointError: ``run_dir`` is not a run folder or holds no model (`gperc_core.api.runs.open_run`).
        TaskError: the plugins of the task's modalities are not installed.
    """
    import torch

    from gperc_core.api.runs import open_run
    from gperc_core.train.trainer import to_device

    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise InputError(f"top_k: expected a positive integer, got {top_k!r}")
    if isinstance(samples_or_files, (str, os.PathLike, Mapping)) or not len(samples_or_files):
        raise InputError(f"samples_or_files: expected a non-empty sequence of samples or files, "
                         f"got {type(samples_or_files).__name__}")
    run = open_run(run_dir, checkpoint=checkpoint, device=device, pm=pm)
    task = run.task
    sources, samples = zip(*(_sample(task, item, i, modality) for i, item in enumerate(samples_or_files)))
    net, device = run.model, run.device
    if model is not None:
        from gperc_core.api.exporting import open_exported

        net, device = open_exported(model, run.model.config), torch.device("cpu")
    batch = to_device(task.encode(list(samples)), device)
    with torch.no_grad():
        probs = net(batch["input_array"], batch["attention_mask"], batch["output_array"]).float().softmax(-1)
    return [{"input": source, "predictions": _top(p, top_k, task.class_names)} for source, p in zip(sources, probs)]


def _sample(task: Any, item: Any, index: int, modality: str | None) -> tuple[str | None, dict[str, Any]]:
    """Return ``(input description, raw sample dict modality -> sample)`` of one item."""
    modalities = list(task.modalities)
    if isinstance(item, Mapping):
        if set(item) != set(modalities):
            raise InputError(f"samples_or_files[{index}]: expected one value per modality {modalities}, "
                             f"got modalities {sorted(map(str, item))}")
        files = {m: v for m, v in item.items() if isinstance(v, os.PathLike)}
        sample = {m: task.read_file(m, v) if m in files else v for m, v in item.items()}
        source = ",".join(f"{m}={os.fspath(v)}" for m, v in files.items()) or None
        return source, sample
    if modality is None:
        if len(modalities) != 1:
            raise InputError(f"samples_or_files[{index}]: expected a mapping modality -> sample or file for the "
                             f"multimodal task {task.name!r} (modalities {modalities}), got {type(item).__name__}")
        modality = modalities[0]
    elif modality not in modalities:
        raise InputError(f"modality: expected one of the task's modalities {modalities}, got {modality!r}")
    elif len(modalities) != 1:
        raise InputError(f"samples_or_files[{index}]: expected a mapping modality -> sample or file for the "
                         f"multimodal task {task.name!r} (modalities {modalities}), got {type(item).__name__}")
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item), {modality: task.read_file(modality, item)}
    return None, {modality: item}


def _top(p: Any, top_k: int, names: Sequence[str] | None) -> list[Any]:
    """The ``top_k`` classes of one probability vector, or the argmax ids of a dense ``[o, classes]`` output."""
    if p.dim() != 1:
        return p.argmax(-1).tolist()
    top = p.topk(min(top_k, p.shape[-1]))
    return [{"class": int(i), "label": names[int(i)] if names and int(i) < len(names) else str(int(i)),
             "probability": round(float(v), 4)} for v, i in zip(top.values, top.indices)]
