"""Task cards a plugin ships as package data: ``<package>/tasks/*.toml``, read with importlib.resources.

A plugin's ``gperc_register_tasks`` returns ``packaged_task_cards("gperc_plugin_image")``; the core
validates the cards (`gperc_core.data.cards.validate_card`) like its own.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from gperc_core.errors import PluginError


def packaged_task_cards(package: str, folder: str = "tasks") -> list[dict[str, Any]]:
    """Return the task cards (TOML tables as dicts) in ``package``'s ``folder``, sorted by file name.

    Each card's name must be ``<folder of the modality>/<file stem>``-like (``image/digits`` for
    ``digits.toml``): the stem must equal the part after the slash. Raises `PluginError` naming the
    file for invalid TOML or a name that does not match its file.
    """
    root = resources.files(package) / folder
    if not root.is_dir():
        raise PluginError(f"plugin package {package!r}: expected task cards in {folder}/ (package data), "
                          f"found no such folder")
    cards = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        where = f"{package}/{folder}/{entry.name}"
        try:
            card = tomllib.loads(entry.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise PluginError(f"{where}: not valid TOML ({exc})") from exc
        stem = entry.name[: -len(".toml")]
        name = card.get("name")
        if not isinstance(name, str) or name.split("/", 1)[-1] != stem:
            raise PluginError(f"{where}: name: expected '<modality>/{stem}' (the file name), got {name!r}")
        cards.append(card)
    return cards


__all__ = ["packaged_task_cards"]
