"""The converted-samples cache as an API: list its entries and clear them (``gperc cache``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gperc_core.data import cache


def cache_entries(root: str | Path | None = None) -> list[dict[str, Any]]:
    """Return one dict per folder of the converted-samples cache (``root``, default
    `gperc_core.data.cache.cache_root`): name, path, dataset, split, modality, selection, rows, bytes,
    created, ok (False for broken or unfinished ones) and problem."""
    return cache.list_entries(Path(root) if root is not None else None)


def clear_cache(pattern: str | None = None, root: str | Path | None = None) -> dict[str, Any]:
    """Delete the cache entries matching ``pattern`` (fnmatch on the folder name or on
    ``dataset/split/modality``; all when None) and return ``{"removed": [...entries], "bytes": freed}``."""
    removed = cache.clear_entries(pattern, Path(root) if root is not None else None)
    return {"removed": removed, "bytes": sum(int(e["bytes"]) for e in removed)}


__all__ = ["cache_entries", "clear_cache"]
