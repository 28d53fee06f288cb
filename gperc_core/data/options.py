"""The resolved per-modality options of a task: card ``[options.<modality>]`` + overrides + defaults, checked.

Each modality's plugin declares its options (`gperc_core.plugins.specs.Option`: type, default,
help, choices) in ``ModalitySpec.options``. `resolve_options` fills the defaults, checks every
value's type and choices and rejects an unknown name with a `TaskError` that names the modality,
the option, the closest known names and all known ones. A plugin that declares no options (or uses
the old ``name -> description`` form, read as untyped options with no default) gets the names it
declares checked all the same; a plugin that declares nothing at all gets its options unchecked.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any, Mapping

from gperc_core.errors import TaskError
from gperc_core.plugins.specs import ModalitySpec, Option, as_option


def declared_options(spec: ModalitySpec) -> dict[str, Option]:
    """Return ``spec``'s declared options as name -> `Option` (old description strings converted)."""
    try:
        return {str(name): as_option(value) for name, value in dict(spec.options or {}).items()}
    except TypeError as exc:
        raise TaskError(f"modality {spec.name!r} (plugin {spec.plugin!r}): ModalitySpec.options: {exc}") from None


def check_option(modality: str, name: str, value: Any, declared: Mapping[str, Option], where: str) -> None:
    """Raise `TaskError` when ``name`` is not a declared option of ``modality`` (with a did-you-mean)
    or ``value`` is not of its type / among its choices; ``where`` names the source (card or override)."""
    option = declared.get(name)
    if option is None:
        known = sorted(declared)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise TaskError(f"{where}: options.{modality}.{name}: unknown option of modality {modality!r} "
                        f"({hint}known options: {', '.join(known) or 'none'})")
    problem = option.problem(value)
    if problem:
        raise TaskError(f"{where}: options.{modality}.{name}: {problem}")


def resolve_modality(spec: ModalitySpec, card_options: Mapping[str, Any], overrides: Mapping[str, Any],
                     source: str) -> dict[str, Any]:
    """Return the options of one modality: declared defaults, then the card's, then the overrides',
    each name and value checked (see the module docstring)."""
    declared = declared_options(spec)
    if not declared:
        return {**copy.deepcopy(dict(card_options)), **copy.deepcopy(dict(overrides))}
    out = {name: copy.deepcopy(o.default) for name, o in declared.items() if o.default is not None}
    for where, values in ((source, card_options), ("override", overrides)):
        for name, value in values.items():
            check_option(spec.name, name, value, declared, where)
            out[name] = copy.deepcopy(value)
    return out


def resolve_options(card: Any, overrides: Mapping[str, Mapping[str, Any]], pm: Any) -> dict[str, dict[str, Any]]:
    """Return modality -> resolved options for every modality of ``card`` (a `TaskCard`), with the
    ``options`` section of the normalised overrides and the modality specs of ``pm``; a card with
    ``[cross_validation]`` sets its modalities' fold options (`fold_options`)."""
    resolved = {m: resolve_modality(pm.modality(m), card.options.get(m, {}), overrides.get(m, {}), card.source)
                for m in card.modalities}
    if getattr(card, "cross_validation", None):
        for modality in card.modalities:
            resolved[modality].update(fold_options(card, pm.modality(modality), resolved[modality],
                                                   card.options.get(modality, {}), overrides.get(modality, {})))
    return resolved


def fold_options(card: Any, spec: ModalitySpec, resolved: Mapping[str, Any], card_options: Mapping[str, Any],
                 overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return the options that carry ``card.cross_validation`` to the dataset of ``spec``'s modality
    (`gperc_core.data.cards.FOLD_OPTIONS`: ``num_folds``, ``fold``, ``split_seed``).

    A modality whose plugin does not declare them is a `TaskError` (its datasets cannot make folds);
    the same option also given in ``[options.<modality>]`` or ``--set options.<modality>.*`` with
    another value is a `TaskError` naming both."""
    from gperc_core.data.cards import FOLD_OPTIONS

    cv = {"fold": 0, "seed": 0, **card.cross_validation}
    declared = declared_options(spec)
    missing = [name for name in FOLD_OPTIONS.values() if name not in declared]
    if missing:
        raise TaskError(f"{card.source}: cross_validation: expected modality {spec.name!r}'s plugin "
                        f"{spec.plugin!r} to declare the fold options {list(FOLD_OPTIONS.values())}, "
                        f"it lacks {missing} (its datasets cannot make folds)")
    out = {}
    for key, name in FOLD_OPTIONS.items():
        for where, given in ((card.source, card_options), ("override", overrides)):
            if name in given and given[name] != cv[key]:
                raise TaskError(f"{where}: options.{spec.name}.{name}: expected {cv[key]!r} "
                                f"(cross_validation.{key}) or nothing, got {given[name]!r}; set "
                                f"cross_validation.{key} instead")
        out[name] = cv[key]
    return out


__all__ = ["declared_options", "check_option", "resolve_modality", "resolve_options", "fold_options"]
