"""Settings read from environment variables."""

from __future__ import annotations

import os

from gperc_core.errors import ConfigError


def env_int(name: str, minimum: int) -> int | None:
    """Return the integer in environment variable ``name`` (``None`` when unset or empty); a value that
    is not an integer >= ``minimum`` is a `ConfigError` naming the variable, the expected and the actual value."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum} in the environment, got {value!r}")
    return number
