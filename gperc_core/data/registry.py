"""The registry of tasks: the cards of the installed plugins and the core, and the index of known tasks.

Plugins ship their own cards (``gperc_register_tasks``); the core keeps ``registry/schema.toml``,
``registry/index.toml`` (every known plugin: its distribution, modalities and tasks, so a task whose
plugin is missing is answered with the exact ``pip install`` line) and the cards that combine
plugins (``registry/multimodal/*.toml``). `load_registry` returns every installed card by name;
`find_card` / `list_tasks` look tasks up.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from gperc_core.data.cards import TaskCard, load_schema, read_toml, registry_dir, validate_card
from gperc_core.errors import TaskError


def card_files(directory: Path | None = None) -> list[Path]:
    """Return the core's own task card files (``<registry>/<folder>/<task>.toml``), sorted."""
    return sorted((directory or registry_dir()).glob("*/*.toml"))


def card_validator(directory: str | Path | None = None) -> Callable[[Mapping[str, Any], str], TaskCard]:
    """Return ``validate(card, plugin)``: the check a plugin's task card must pass (the schema, and a
    name that is not one of the core's cards), raising `TaskError` naming the plugin and the key.

    The plugin manager runs it while collecting each plugin (`PluginManager.use_card_validator`), so
    a plugin with a bad card is dropped whole instead of breaking every task.
    """
    root = Path(directory) if directory is not None else registry_dir()
    schema = load_schema(root)
    core = {f"{path.parent.name}/{path.stem}" for path in card_files(root)}

    def validate(card: Mapping[str, Any], plugin: str) -> TaskCard:
        checked = validate_card(card, f"task card {card.get('name')!r} of plugin {plugin!r}"
                                if isinstance(card, Mapping) else f"a task card of plugin {plugin!r}", schema)
        if checked.name in core:
            raise TaskError(f"task card {checked.name!r} of plugin {plugin!r}: name: the core's registry already "
                            f"defines {checked.name!r}; expected a new name")
        return checked

    return validate


def check_plugin_cards(pm: Any) -> Any:
    """Install the core's card check on plugin manager ``pm`` (see `card_validator`); returns ``pm``."""
    if pm is not None and hasattr(pm, "use_card_validator"):
        pm.use_card_validator(card_validator())
    return pm


def load_registry(pm: Any = None, directory: str | Path | None = None,
                  extra_cards: Iterable[Mapping[str, Any]] = ()) -> dict[str, TaskCard]:
    """Return every task card by name: the core's cards, the cards registered by the plugins of ``pm``
    (a `PluginManager`; ``None`` = only the core's cards) and ``extra_cards``.

    A plugin whose card fails validation is dropped by ``pm`` with its modalities and datasets (see
    `card_validator`); a name defined twice otherwise is a `TaskError` naming both sources.
    """
    root = Path(directory) if directory is not None else registry_dir()
    schema = load_schema(root)
    cards: dict[str, TaskCard] = {}
    check_plugin_cards(pm)

    def add(card: TaskCard) -> None:
        if card.name in cards:
            raise TaskError(f"task {card.name!r}: defined twice, by {cards[card.name].source} and by {card.source}")
        cards[card.name] = card

    for path in card_files(root):
        card = validate_card(read_toml(path), str(path), schema)
        expected = f"{path.parent.name}/{path.stem}"
        if card.name != expected:
            raise TaskError(f"{path}: name: expected {expected!r} (the card's folder/file name), got {card.name!r}")
        add(card)
    plugin_cards = list(getattr(pm, "task_cards", []) or []) if pm is not None else []
    for data in [*plugin_cards, *extra_cards]:
        plugin = data.get("plugin") if isinstance(data, Mapping) else None
        card = validate_card(data, f"plugin:{plugin}" if plugin else "extra card", schema)
        card.plugin = plugin
        add(card)
    return cards


@dataclass
class PluginEntry:
    """One known plugin of ``registry/index.toml``."""

    name: str
    distribution: str
    modalities: list[str]
    tasks: list[str]

    @property
    def install_hint(self) -> str:
        """The command that installs this plugin."""
        return f"pip install {self.distribution}"


def load_index(directory: str | Path | None = None) -> list[PluginEntry]:
    """Return the known plugins of ``registry/index.toml``."""
    path = (Path(directory) if directory is not None else registry_dir()) / "index.toml"
    entries = []
    for i, item in enumerate(read_toml(path).get("plugins", [])):
        try:
            entries.append(PluginEntry(name=item["name"], distribution=item["distribution"],
                                       modalities=list(item.get("modalities", [])), tasks=list(item.get("tasks", []))))
        except (KeyError, TypeError) as exc:
            raise TaskError(f"{path}: plugins[{i}]: expected name and distribution, got {item!r}") from exc
    return entries


def plugin_for_modality(modality: str, directory: str | Path | None = None) -> PluginEntry | None:
    """Return the known plugin that supplies ``modality``, or ``None``."""
    return next((e for e in load_index(directory) if modality in e.modalities), None)


def install_hint(modality: str) -> str:
    """Return the ``pip install`` line for the plugin of ``modality`` (the index's, else the naming convention)."""
    entry = plugin_for_modality(modality)
    return entry.install_hint if entry else f"pip install gperc-plugin-{modality}"


def install_hints(modalities: Iterable[str]) -> str:
    """Return the install lines of several modalities joined with `` && `` (sorted, no repeats)."""
    return " && ".join(sorted({install_hint(m) for m in modalities}))


def known_tasks() -> dict[str, PluginEntry]:
    """Return task name -> the known plugin of the index that ships it (installed or not)."""
    return {task: entry for entry in load_index() for task in entry.tasks}


def plugin_manager(pm: Any = None) -> Any:
    """Return ``pm``, or the environment's default plugin manager when it is ``None``."""
    if pm is None:
        from gperc_core.plugins.manager import default_plugin_manager

        pm = default_plugin_manager()
    return check_plugin_cards(pm)


def list_tasks(pattern: str = "*", pm: Any = None, with_plugins: bool = True) -> list[str]:
    """Return the sorted names of the installed tasks matching the fnmatch ``pattern`` (the core's
    cards plus, with ``with_plugins``, the cards registered by the installed plugins)."""
    cards = load_registry(plugin_manager(pm) if with_plugins else None)
    return sorted(name for name in cards if fnmatch.fnmatchcase(name, pattern))


def find_card(name: str, pm: Any = None) -> TaskCard:
    """Return the card of task ``name``; an unknown name raises `TaskError` with the ``pip install``
    line when a known plugin that is not installed ships it, else with the closest names."""
    if not isinstance(name, str) or not name:
        raise TaskError(f"task: expected a task name like 'image/digits', got {name!r}")
    pm = plugin_manager(pm)
    cards = load_registry(pm)
    if name in cards:
        return cards[name]
    entry = known_tasks().get(name)
    broken = unavailable(pm, "tasks", name, entry.name if entry is not None else None)
    if broken:
        raise TaskError(f"task {name!r}: unavailable: {broken}")
    if entry is not None:
        raise TaskError(f"task {name!r} comes from the {entry.name!r} plugin, which is not installed: "
                        f"{entry.install_hint}")
    close = difflib.get_close_matches(name, list(cards), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else \
        f"known tasks: {', '.join(sorted(cards)) or 'none'}"
    raise TaskError(f"task {name!r}: unknown task ({hint}); 'gperc tasks' lists them")


def unavailable(pm: Any, kind: str, name: str, plugin: str | None = None) -> str | None:
    """Return why ``name`` (of ``kind`` "modalities" / "datasets" / "tasks") is missing because the
    plugin that supplies it is installed but broken (``plugin``: the index's plugin for it, if known),
    or ``None`` (``pm`` has no such plugin, or is not a `PluginManager`)."""
    ask = getattr(pm, "unavailable", None)
    return ask(kind, name, plugin) if ask is not None else None


def modality_unavailable(pm: Any, modality: str) -> str | None:
    """Return why ``modality`` is missing because its (installed) plugin is broken, else ``None``."""
    entry = plugin_for_modality(modality)
    return unavailable(pm, "modalities", modality, entry.name if entry is not None else None)


def withheld_tasks(pm: Any) -> dict[str, str]:
    """Return task name -> why it is unavailable, for the tasks that broken plugins of ``pm`` would
    have registered (see `PluginManager.unavailable`)."""
    out: dict[str, str] = {}
    for info in getattr(pm, "broken_plugins", lambda: [])():
        for task in info.withheld.get("tasks", []):
            out[task] = unavailable(pm, "tasks", task) or ""
    return out


def require_modalities(card: TaskCard, pm: Any) -> None:
    """Raise `TaskError` when a modality of ``card`` is not in ``pm``: naming its broken plugin (see
    `unavailable`) when it is installed but broken, else with the install line."""
    missing = [m for m in card.modalities if m not in pm.modalities]
    for modality in missing:
        broken = modality_unavailable(pm, modality)
        if broken:
            raise TaskError(f"task {card.name!r} is unavailable: {broken}")
    if missing:
        raise TaskError(f"task {card.name!r} needs modality {missing[0]!r}, which is not installed: "
                        f"{install_hints(missing)}")


__all__ = ["TaskCard", "validate_card", "load_registry", "load_schema", "registry_dir", "card_files",
           "PluginEntry", "load_index", "plugin_for_modality", "install_hint", "install_hints", "known_tasks",
           "list_tasks", "find_card", "require_modalities", "plugin_manager", "card_validator", "check_plugin_cards",
           "unavailable", "modality_unavailable", "withheld_tasks"]
