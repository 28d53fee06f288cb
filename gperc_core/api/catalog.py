"""What is installed: the known tasks (``gperc tasks``) and the plugins (``gperc plugins``)."""

from __future__ import annotations

import warnings
from typing import Any, Sequence


def known_tasks(pattern: str = "*", *, pm: Any = None) -> list[dict[str, Any]]:
    """Return one dict per known task whose name matches ``pattern`` (sorted by name).

    ``pattern`` is an fnmatch pattern (``"image/*"``); a plain word without ``*?[`` matches as
    ``*word*``. Each dict is the task card plus ``source``, ``plugin``, ``installed`` (bool) and,
    for a task whose modalities are missing, ``install`` (the pip line). ``pm``: the plugin manager,
    default the installed plugins.
    """
    from gperc_core.data.tasks import describe_tasks

    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    return describe_tasks(pattern, pm)


def installed_plugins(*, allow: str | Sequence[str] | None = None,
                 block: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Return one dict per plugin found in entry-point group ``gperc`` (``name``, ``distribution``,
    ``version``, ``hooks``, ``registered``, ``error``, ``stage``, ``withheld``, ``enabled``, ``module``),
    sorted by name. A plugin whose task card fails validation is listed as broken (stage ``task card``).

    ``allow`` / ``block`` are the allow- and block-lists (default: the environment's
    ``GPERC_PLUGINS`` / ``GPERC_DISABLE_PLUGINS``). Never raises for a broken plugin: it is listed
    with its error. A name in ``allow`` that matches no plugin warns `AllowListWarning`.
    """
    from gperc_core.data.registry import check_plugin_cards
    from gperc_core.plugins.manager import AllowListWarning, PluginWarning, get_plugin_manager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # load errors are in the listing itself
        warnings.simplefilter("always", AllowListWarning)  # a typo in the allow-list is not
        pm = check_plugin_cards(get_plugin_manager(allow=allow, block=block, strict=False))
        return [info.to_dict() for info in pm.plugins_info()]
