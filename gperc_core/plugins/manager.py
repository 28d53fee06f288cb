"""The plugin manager: finds gperc plugins, loads each in isolation, and collects what they register.

A plugin is a module with `gperc_core.hookimpl` functions, advertised by an entry point in group
``gperc`` whose name is the plugin name (``image = "gperc_plugin_image.plugin"``). Loading, one
entry point at a time:

1. allow-list / block-list: ``allow`` / ``block`` (default: env ``GPERC_PLUGINS`` /
   ``GPERC_DISABLE_PLUGINS``, comma-separated plugin or distribution names; the CLI flags
   ``--plugins`` / ``--disable-plugins`` pass them in). A plugin left out is listed, not loaded.
2. core version range, before importing the plugin: the ``gperc-core`` requirement in the
   distribution's ``Requires-Dist`` metadata must admit the running gperc-core version. A plugin
   without distribution metadata may declare ``GPERC_CORE_REQUIRES = ">=0.1,<0.2"`` in its module,
   checked right after import.
3. import and register; then every hook implementation must match a hook specification, so a
   misspelled hook name fails (the per-plugin form of pluggy's ``check_pending()``).

A plugin failing any step is skipped with a `PluginWarning` naming the plugin, its distribution,
the error and how to disable it; with ``strict`` (env ``GPERC_STRICT_PLUGINS=1``) it raises
`PluginError` instead. Plugins registered in-process (``plugins=`` or `PluginManager.register`)
always fail loudly.

Modalities, datasets and task cards are collected lazily, each stamped with its plugin, all or
nothing per plugin: the three registration hooks of a plugin are called, their items checked (and
its task cards validated by the card validator the data layer installs, `use_card_validator`);
if any of that fails the plugin is dropped whole: nothing it registered stays, its per-modality
hooks are unregistered, and `PluginInfo` records the ``stage`` and the ``error`` (plus, in
``withheld``, the names it would have registered, so a lookup of one of them says the plugin is
broken instead of "not installed"). A name registered by two plugins is a `PluginError` naming
both.

Per-modality hooks are called through `PluginManager.call_firstresult`, which knows which plugin
answered and turns an exception raised in plugin code into a `PluginHookError` naming the plugin,
its distribution and version, the hook and where it was called (split, sample index).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import threading
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable, Sequence

import pluggy

from gperc_core._version import __version__ as CORE_VERSION
from gperc_core.plugins import hookspecs
from gperc_core.errors import GpercError, PluginError, PluginHookError, TaskError
from gperc_core.plugins.specs import DatasetSpec, ModalitySpec

__all__ = ["PluginManager", "PluginInfo", "PluginWarning", "PluginHookError", "env_strict", "AllowListWarning", "get_plugin_manager", "default_plugin_manager",
           "reset_default_plugin_manager", "plugin_manager_from_args", "check_core_requirement", "plugin_failure", "STAGES", "ENTRY_POINT_GROUP", "CORE_DISTRIBUTION"]

ENTRY_POINT_GROUP = hookspecs.PROJECT
"""Entry-point group that advertises gperc plugins."""

CORE_DISTRIBUTION = "gperc-core"
"""Distribution name whose version range a plugin declares."""

ENV_ALLOW = "GPERC_PLUGINS"
ENV_BLOCK = "GPERC_DISABLE_PLUGINS"
ENV_STRICT = "GPERC_STRICT_PLUGINS"

STAGES = ("entry point", "version gate", "import", "hooks", "gperc_register_modalities", "gperc_register_datasets",
          "gperc_register_tasks", "task card", "collision")
"""Where a plugin can fail while it is loaded or collected (`PluginInfo.stage`)."""

_REGISTRATION = (("gperc_register_modalities", "modalities"), ("gperc_register_datasets", "datasets"),
                 ("gperc_register_tasks", "tasks"))

_KINDS = ("modalities", "datasets", "tasks")
_SINGULAR = {"modalities": "modality", "datasets": "dataset", "tasks": "task"}
_ITEM_TYPES: dict[str, type] = {"modalities": ModalitySpec, "datasets": DatasetSpec, "tasks": dict}


class PluginWarning(UserWarning):
    """A plugin failed to load or to register and was skipped."""


class AllowListWarning(PluginWarning):
    """The plugin allow-list names a plugin that is not installed."""


@dataclass
class PluginInfo:
    """What `gperc plugins` shows about one plugin.

    ``name`` is the plugin (entry-point) name; ``distribution`` and ``version`` come from its
    package metadata (``None`` for plugins registered in-process); ``hooks`` are the hook names it
    implements; ``registered`` maps "modalities" / "datasets" / "tasks" to the names it registered;
    ``error`` is why it is not (fully) working, if it is not, and ``stage`` where that happened (one
    of `STAGES`); ``withheld`` maps "modalities" / "datasets" / "tasks" to the names a broken plugin
    would have registered (as far as its hooks could tell); ``enabled`` is False for plugins left
    out by the allow-list or block-list.
    """

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in _KINDS})
    error: str | None = None
    enabled: bool = True
    module: str | None = None
    stage: str | None = None
    withheld: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in _KINDS})

    @property
    def label(self) -> str:
        """``plugin 'name' (distribution version)`` for messages."""
        dist = f"{self.distribution} {self.version}" if self.distribution else "registered in-process"
        return f"plugin {self.name!r} ({dist})"

    def to_dict(self) -> dict[str, Any]:
        """Return the info as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------- environment helpers
def _split_names(value: str | Sequence[str] | None) -> list[str] | None:
    """Return the names of a comma-separated string or a list (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, str):
        items = value.split(",")
    else:
        items = list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def _env_names(var: str) -> list[str] | None:
    value = os.environ.get(var)
    return None if value is None or not value.strip() else _split_names(value)


def env_strict() -> bool:
    """Return True when env ``GPERC_STRICT_PLUGINS`` asks for strict mode (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(ENV_STRICT, "").strip().lower() in ("1", "true", "yes", "on")


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def check_core_requirement(specifier: str | None, where: str, core_version: str = CORE_VERSION) -> str | None:
    """Return why ``specifier`` (e.g. ``">=0.1,<0.2"``) rejects ``core_version``, or ``None`` when it admits it.

    ``where`` names the declaration in the message. An unparsable specifier is also a reason.
    """
    if specifier is None or not str(specifier).strip():
        return None
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = SpecifierSet(str(specifier))
    except InvalidSpecifier:
        return f"{where}: expected a version specifier such as '>=0.1,<0.2', got {specifier!r}"
    if spec.contains(core_version, prereleases=True):
        return None
    return (f"requires gperc-core{spec} ({where}), but gperc-core {core_version} is installed; "
            f"install a version of the plugin made for gperc-core {core_version}")


def _distribution_core_specifier(dist: metadata.Distribution | None) -> str | None:
    """Return the ``gperc-core`` specifier from ``dist``'s Requires-Dist (ignoring extras-only ones)."""
    if dist is None:
        return None
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    specs = []
    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != CORE_DISTRIBUTION:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        specs.append(str(req.specifier))
    joined = ",".join(s for s in specs if s)
    return joined or None


# --------------------------------------------------------------------- the manager
class PluginManager(pluggy.PluginManager):
    """A pluggy manager of project ``gperc`` that knows which plugin registered what.

    ``hook`` is the hook relay (call hooks with keyword arguments). ``modalities``, ``datasets``
    and ``task_cards`` are collected from every plugin on first access; ``plugins_info()`` reports
    every plugin found, including the ones that failed or were left out.
    """

    def __init__(self, *, strict: bool = False) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.strict = bool(strict)
        self._infos: dict[str, PluginInfo] = {}
        self._lock = threading.RLock()
        self._collected: dict[str, Any] | None = None
        self._collisions: list[str] = []
        self._broken: list[str] = []
        self._card_validator: Callable[[dict[str, Any], str], Any] | None = None

    # ----------------------------------------------------------------- registration
    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` (a module or object with hook implementations) under ``name``.

        Raises `PluginError` when the name is taken or a hook implementation matches no hook
        specification (a misspelled hook name) or has arguments the specification lacks.
        Returns the registered name.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        try:
            registered = super().register(plugin, name)
        except ValueError as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from exc
        except pluggy.PluginValidationError as exc:
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise PluginError(f"plugin {name!r}: {detail}") from exc
        problem = self._unknown_hooks(plugin)
        if problem:
            self.unregister(plugin)
            raise PluginError(f"plugin {name!r}: {problem}")
        if name not in self._infos:
            self._infos[name] = PluginInfo(name=name, module=getattr(plugin, "__name__", None))
        self._invalidate()
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        """Unregister a plugin (by object or name) and forget what it registered.

        An in-process plugin disappears from `plugins_info`; an entry-point plugin stays listed.
        """
        name = name or (self.get_name(plugin) if plugin is not None else None)
        result = super().unregister(plugin, name)
        info = self._infos.get(name) if name else None
        if info is not None and info.distribution is None and info.error is None:
            del self._infos[name]
        self._invalidate()
        return result

    def _unknown_hooks(self, plugin: object) -> str | None:
        """Return a message naming ``plugin``'s hook implementations with no specification, if any."""
        unknown = [hc.name for hc in self.get_hookcallers(plugin) or () if not hc.has_spec()
                   and not any(impl.optionalhook for impl in hc.get_hookimpls() if impl.plugin is plugin)]
        if not unknown:
            return None
        parts = []
        for hook in sorted(unknown):
            close = difflib.get_close_matches(hook, hookspecs.HOOK_NAMES, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parts.append(f"{hook!r}{hint}")
        return (f"implements unknown hook(s) {', '.join(parts)}; expected hook names are "
                f"{', '.join(hookspecs.HOOK_NAMES)}")

    def _invalidate(self) -> None:
        with self._lock:
            self._collected = None
            self._collisions = []

    # ----------------------------------------------------------------- entry points
    def load_entry_points(self, allow: Sequence[str] | None = None, block: Sequence[str] | None = None) -> None:
        """Load every plugin advertised in entry-point group ``gperc``, each in isolation (see module doc)."""
        allow_set = {_normalise(n) for n in allow} if allow is not None else None
        block_set = {_normalise(n) for n in block or ()}
        seen: dict[str, str] = {}
        try:
            found = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        except Exception as exc:  # noqa: BLE001 - broken metadata of some distribution must not stop gperc
            self._fail(PluginInfo(name="<entry points>"), exc, "entry point")
            found = []
        for ep in found:
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            version = dist.version if dist is not None else None
            info = PluginInfo(name=ep.name, distribution=dist_name, version=version, module=ep.value)
            keys = {_normalise(ep.name)} | ({_normalise(dist_name)} if dist_name else set())
            if (allow_set is not None and not keys & allow_set) or keys & block_set:
                info.enabled = False
                self._infos.setdefault(ep.name, info)
                continue
            if ep.name in seen:
                owner = seen[ep.name]
                if owner == (dist_name or "?"):
                    continue  # the same distribution found twice on the path
                info.name = f"{ep.name} ({dist_name})"
                self._fail(info, PluginError(f"plugin name {ep.name!r} is advertised by both {owner!r} "
                                             f"and {dist_name!r}; only the first is loaded"), "entry point")
                continue
            seen[ep.name] = dist_name or "?"
            self._infos[ep.name] = info
            self._load_one(ep, dist, info)
        if allow is not None:
            self._warn_unknown_allowed(allow, found)
        self._check_all_pending()

    @staticmethod
    def _warn_unknown_allowed(allow: Sequence[str], found: Sequence[metadata.EntryPoint]) -> None:
        """Warn about allow-list names that match no installed plugin (a typo would disable everything)."""
        known = {_normalise(ep.name) for ep in found}
        known |= {_normalise(ep.dist.metadata["Name"]) for ep in found if getattr(ep, "dist", None) is not None}
        unknown = [name for name in allow if _normalise(name) not in known]
        if unknown:
            installed = ", ".join(sorted({ep.name for ep in found})) or "none"
            warnings.warn(f"the plugin allow-list ({ENV_ALLOW} / --plugins) names {unknown}, which match no "
                          f"installed plugin (installed: {installed})", AllowListWarning, stacklevel=4)

    def _load_one(self, ep: metadata.EntryPoint, dist: metadata.Distribution | None, info: PluginInfo) -> None:
        where = f"Requires-Dist of {info.distribution}"
        reason = check_core_requirement(_distribution_core_specifier(dist), where)
        if reason:
            self._fail(info, PluginError(reason), "version gate")
            return
        try:
            module = ep.load()
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything, even SystemExit
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._fail(info, exc, "import")
            return
        reason = check_core_requirement(getattr(module, "GPERC_CORE_REQUIRES", None),
                                        f"GPERC_CORE_REQUIRES of {getattr(module, '__name__', ep.value)}")
        if reason:
            self._fail(info, PluginError(reason), "version gate")
            return
        try:
            self.register(module, name=ep.name)
        except PluginError as exc:
            self._fail(info, exc, "hooks")
            return
        if not self.get_hookcallers(module):
            self.unregister(module)
            self._fail(info, PluginError(f"entry point {ep.name} = {ep.value!r} names a module that implements no "
                                         f"gperc hook; point it at the module holding the @hookimpl functions"), "hooks")

    def _check_all_pending(self) -> None:
        """pluggy's ``check_pending()``: no registered hook implementation lacks a specification."""
        try:
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from exc

    def _fail(self, info: PluginInfo, exc: BaseException, stage: str, *, raise_strict: bool = True) -> str:
        """Record why ``info``'s plugin is skipped (``stage``: one of `STAGES`) and warn, or raise in strict
        mode (unless ``raise_strict`` is False: the caller raises once it is done). Returns the message."""
        error = f"{type(exc).__name__}: {exc}"
        info.error, info.stage = error, stage
        self._infos[info.name] = info
        dist = f"distribution {info.distribution} {info.version}" if info.distribution else "no distribution"
        uninstall = f", or uninstall it with 'pip uninstall {info.distribution}'" if info.distribution else ""
        message = (f"gperc plugin {info.name!r} ({dist}) was skipped: {error}. Disable it with "
                   f"GPERC_DISABLE_PLUGINS={info.name} or 'gperc --disable-plugins {info.name}'{uninstall}. "
                   f"It failed at stage {stage!r}; none of its modalities, datasets or tasks are used.")
        if self.strict:
            if raise_strict:
                raise PluginError(message + f" ({ENV_STRICT}=1 makes this fatal)") from exc
            return message  # the caller raises it
        warnings.warn(message, PluginWarning, stacklevel=3)
        return message

    # ----------------------------------------------------------------- collected registrations
    def use_card_validator(self, validate: Callable[[dict[str, Any], str], Any]) -> None:
        """Validate every plugin's task cards with ``validate(card, plugin_name)`` (raising on a bad card)
        as part of collecting the plugin: a plugin with a bad card is dropped whole. The data layer
        installs its schema check here (`gperc_core.data.registry`); only the first validator is kept."""
        with self._lock:
            if self._card_validator is None:
                self._card_validator = validate
                self._invalidate()

    def _collect(self) -> dict[str, Any]:
        with self._lock:
            if self._collected is not None:
                return self._collected
            collected: dict[str, dict[str, Any]] = {k: {} for k in _KINDS}
            collisions: list[str] = []
            broken: list[str] = []
            for name, plugin in list(self.list_name_plugin()):
                if plugin is None:
                    continue
                info = self._infos.setdefault(name, PluginInfo(name=name))
                info.registered = {k: [] for k in _KINDS}
                items = self._registrations(name, plugin, info, broken)
                if items is not None:
                    self._add(name, info, items, collected, collisions)
            self._collisions, self._broken = collisions, broken
            self._collected = collected
            return collected

    def _registrations(self, name: str, plugin: object, info: PluginInfo, broken: list[str]
                       ) -> dict[str, list[Any]] | None:
        """Return what plugin ``name`` registers (kind -> checked items), or ``None`` after dropping it
        whole when a registration hook raises, returns a wrong type, or a task card is invalid."""
        items: dict[str, list[Any]] = {k: [] for k in _KINDS}
        failure: tuple[str, BaseException] | None = None
        for hook_name, kind in _REGISTRATION:
            impl = next((i for i in getattr(self.hook, hook_name).get_hookimpls() if i.plugin is plugin), None)
            if impl is None:
                continue
            try:
                items[kind] = _validated_items(impl.function(), _ITEM_TYPES[kind], name, hook_name)
            except Exception as exc:  # noqa: BLE001 - isolate a plugin whose registration hook breaks
                failure = failure or (hook_name, exc)
        if failure is None and self._card_validator is not None:
            for card in items["tasks"]:
                try:
                    self._card_validator(card, name)
                except Exception as exc:  # noqa: BLE001 - a bad card drops its plugin, not the registry
                    failure = ("task card", exc)
                    break
        if failure is None:
            return items
        info.withheld = {k: [_item_name(i) for i in v] for k, v in items.items()}
        info.hooks = sorted(hc.name for hc in self.get_hookcallers(plugin) or ())
        info.error = f"{type(failure[1]).__name__}: {failure[1]}"  # keeps the info when unregistering
        pluggy.PluginManager.unregister(self, plugin)  # its per-modality hooks answer no more
        broken.append(self._fail(info, failure[1], failure[0], raise_strict=False))
        return None

    def _add(self, plugin_name: str, info: PluginInfo, items: dict[str, list[Any]],
             collected: dict[str, dict[str, Any]], collisions: list[str]) -> None:
        """Stamp ``items`` with their plugin into ``collected``, recording names registered twice."""
        for kind, into in collected.items():
            for item in items[kind]:
                name = _item_name(item)
                if name in into:
                    owner = _owner(into[name])
                    msg = (f"{_SINGULAR[kind]} {name!r} is registered by both plugin {owner!r} and plugin "
                           f"{plugin_name!r}; disable one with GPERC_DISABLE_PLUGINS")
                    collisions.append(msg)
                    for who in (owner, plugin_name):
                        if who in self._infos:
                            self._infos[who].error = f"PluginError: {msg}"
                            self._infos[who].stage = "collision"
                    continue
                into[name] = _stamp(item, plugin_name)
                info.registered[kind].append(name)

    def _collected_checked(self) -> dict[str, Any]:
        collected = self._collect()
        if self._collisions:
            raise PluginError("; ".join(self._collisions))
        if self.strict and self._broken:
            raise PluginError(self._broken[0] + f" ({ENV_STRICT}=1 makes this fatal)")
        return collected

    @property
    def modalities(self) -> dict[str, ModalitySpec]:
        """Every registered modality by name, each stamped with its plugin."""
        return self._collected_checked()["modalities"]

    @property
    def datasets(self) -> dict[str, DatasetSpec]:
        """Every registered dataset by name, each stamped with its plugin."""
        return self._collected_checked()["datasets"]

    @property
    def task_cards(self) -> list[dict[str, Any]]:
        """Every plugin-registered task card (a copy with key ``"plugin"`` stamped)."""
        return list(self._collected_checked()["tasks"].values())

    def modality(self, name: str) -> ModalitySpec:
        """Return the modality ``name``; unknown names raise `PluginError`: the broken plugin that would
        register it, else close names and the install hint."""
        modalities = self.modalities
        if name in modalities:
            return modalities[name]
        broken = self.unavailable("modalities", name)
        if broken:
            raise PluginError(broken)
        raise PluginError(f"modality {name!r} is not installed{_closest(name, modalities)}; "
                          f"install its plugin with 'pip install gperc-plugin-{name}'")

    def dataset(self, name: str) -> DatasetSpec:
        """Return the dataset ``name``; unknown names raise `TaskError`: the broken plugin that would
        register it, else close names and an install hint."""
        datasets = self.datasets
        if name in datasets:
            return datasets[name]
        broken = self.unavailable("datasets", name)
        if broken:
            raise TaskError(broken)
        raise TaskError(f"dataset {name!r} is not registered by any installed plugin{_closest(name, datasets)}; "
                        f"datasets come from modality plugins, e.g. 'pip install gperc-plugin-<modality>'")

    # ----------------------------------------------------------------- broken plugins
    def broken_plugins(self) -> list[PluginInfo]:
        """Return the enabled plugins that failed to load or to register (collecting first), by name."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)
            self._collect()
        return [i for _, i in sorted(self._infos.items()) if i.enabled and i.error]

    def find_info(self, name: str) -> PluginInfo | None:
        """Return the `PluginInfo` of plugin or distribution ``name`` (``_`` / ``-`` / case ignored), or ``None``."""
        key = _normalise(name)
        return next((i for i in self._infos.values() if key in {_normalise(i.name), _normalise(i.distribution or "")}),
                    None)

    def unavailable(self, kind: str, name: str, plugin: str | None = None) -> str | None:
        """Return why ``name`` (a "modalities" / "datasets" / "tasks" ``kind``) is unavailable because
        its plugin is installed but broken: the plugin that withheld it, or ``plugin`` (a plugin or
        distribution name, e.g. from the registry index) when that one is broken; else ``None``."""
        self.broken_plugins()
        info = next((i for i in self._infos.values() if i.error and name in i.withheld.get(kind, ())), None)
        if info is None and plugin is not None:
            found = self.find_info(plugin)
            info = found if found is not None and found.enabled and found.error else None
        if info is None:
            return None
        return (f"{_SINGULAR[kind]} {name!r} comes from {info.label}, which is installed but broken "
                f"(failed at {info.stage}: {info.error}); 'gperc plugins' shows the details")

    def label(self, plugin_name: str | None) -> str:
        """Return ``plugin 'name' (distribution version)`` for ``plugin_name`` (messages)."""
        info = self._infos.get(plugin_name or "")
        return info.label if info is not None else f"plugin {plugin_name!r}"

    # ----------------------------------------------------------------- calling per-modality hooks
    def call_firstresult(self, hook_name: str, where: str = "", **kwargs: Any) -> tuple[Any, str | None]:
        """Call the ``firstresult`` hook ``hook_name`` with ``kwargs``; return ``(result, plugin)``: the
        first non-``None`` result and the name of the plugin that gave it (``(None, None)`` when none did).

        An exception raised by a plugin's implementation becomes a `PluginHookError` (a `GpercError` it
        raised keeps its class) naming the plugin, its distribution and version, the hook, the
        modality and ``where`` (e.g. ``"split 'train', sample 3"``); the original is its ``__cause__``.
        """
        caller = getattr(self.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # pluggy's calling order
            try:
                result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
                raise self._hook_error(impl.plugin_name, hook_name, where, kwargs, exc) from exc
            if result is not None:
                return result, impl.plugin_name
        return None, None

    def _hook_error(self, plugin_name: str, hook_name: str, where: str, kwargs: dict[str, Any],
                    exc: BaseException) -> GpercError:
        context = ", ".join(x for x in (f"modality {kwargs['modality']!r}" if "modality" in kwargs else "", where) if x)
        message = (f"{self.label(plugin_name)} raised in {hook_name}" + (f" ({context})" if context else "")
                   + f": {type(exc).__name__}: {exc}")
        return plugin_failure(message, exc)

    # ----------------------------------------------------------------- reporting
    def plugins_info(self) -> list[PluginInfo]:
        """Return one `PluginInfo` per plugin found (loaded, failed or left out), sorted by name.

        Never raises for a plugin's fault: collisions and failing registration hooks show as errors.
        """
        self.broken_plugins()
        infos = []
        for name, info in sorted(self._infos.items()):
            plugin = self.get_plugin(name)
            if plugin is not None:
                info.hooks = sorted(hc.name for hc in self.get_hookcallers(plugin) or ())
                if info.module is None:
                    info.module = getattr(plugin, "__name__", None)
            infos.append(info)
        return infos


def plugin_failure(message: str, exc: BaseException) -> GpercError:
    """Return the gperc error to raise for ``exc`` raised in plugin code, with ``message``: a `GpercError`
    keeps its class (an `InputError` stays one), anything else becomes a `PluginHookError`."""
    if isinstance(exc, GpercError):
        try:
            return type(exc)(message)
        except Exception:  # noqa: BLE001 - a subclass with another constructor
            pass
    return PluginHookError(message)


def _item_name(item: Any) -> str:
    return item["name"] if isinstance(item, dict) else item.name


def _validated_items(result: Any, item_type: type, plugin: str, hook: str) -> list[Any]:
    """Check a registration hook's return value: a list of ``item_type`` with string names."""
    if result is None:
        return []
    if not isinstance(result, (list, tuple)):
        raise PluginError(f"plugin {plugin!r}: {hook}() must return a list of {item_type.__name__}, "
                          f"got {type(result).__name__}")
    for i, item in enumerate(result):
        if not isinstance(item, item_type):
            raise PluginError(f"plugin {plugin!r}: {hook}()[{i}]: expected a {item_type.__name__}, "
                              f"got {type(item).__name__}")
        name = item.get("name") if isinstance(item, dict) else item.name
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r}: {hook}()[{i}]: expected a non-empty string name, got {name!r}")
    return list(result)


def _stamp(item: Any, plugin: str) -> Any:
    if isinstance(item, dict):
        return {**item, "plugin": plugin}
    return dataclasses.replace(item, plugin=plugin)


def _owner(item: Any) -> str:
    return item["plugin"] if isinstance(item, dict) else item.plugin


def _closest(name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        return f" (did you mean {', '.join(repr(c) for c in close)}?)"
    return f" (installed: {', '.join(known)})" if known else " (none installed)"


# --------------------------------------------------------------------- constructors
def get_plugin_manager(*, allow: Sequence[str] | str | None = None, block: Sequence[str] | str | None = None,
                       strict: bool | None = None, entry_points: bool = True,
                       plugins: Iterable[object] = ()) -> PluginManager:
    """Build a new `PluginManager`.

    ``allow`` / ``block`` are plugin or distribution names (a list or a comma-separated string);
    they default to env ``GPERC_PLUGINS`` / ``GPERC_DISABLE_PLUGINS``. ``strict`` (default env
    ``GPERC_STRICT_PLUGINS=1``) makes a failing plugin raise `PluginError` instead of warning.
    ``entry_points=False`` skips installed plugins; ``plugins`` are extra plugin objects or modules
    registered in-process under ``__name__`` (tests).
    """
    allow_names = _split_names(allow) if allow is not None else _env_names(ENV_ALLOW)
    block_names = _split_names(block) if block is not None else _env_names(ENV_BLOCK)
    pm = PluginManager(strict=env_strict() if strict is None else strict)
    if entry_points:
        pm.load_entry_points(allow=allow_names, block=block_names)
    for plugin in plugins:
        pm.register(plugin)
    return pm


_default: PluginManager | None = None
_default_lock = threading.Lock()


def default_plugin_manager() -> PluginManager:
    """Return the process-wide manager built from the environment (built once, then cached)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = get_plugin_manager()
        return _default


def reset_default_plugin_manager() -> None:
    """Forget the cached default manager (after installing a plugin, or in tests)."""
    global _default
    with _default_lock:
        _default = None


def plugin_manager_from_args(args: Any, *, strict: bool | None = None) -> PluginManager:
    """Return a manager honouring the CLI's ``--plugins`` / ``--disable-plugins`` (``args.plugin_allow`` /
    ``args.plugin_block``), falling back to the environment for each one not given. ``strict``
    (default: the environment's) is only used for a manager built here, not for the cached default
    one; ``strict=False`` always builds a new, lenient manager (to list what is broken)."""
    allow = getattr(args, "plugin_allow", None)
    block = getattr(args, "plugin_block", None)
    if allow is None and block is None and strict is None:
        return default_plugin_manager()
    return get_plugin_manager(allow=allow, block=block, strict=strict)
