"""Settings from an optional TOML file and the environment (CALSYNC_*), environment winning.

The file is `$CALSYNC_CONFIG`, else `config.toml` in the user config dir. Its keys are either flat
(`zoom_client_id = "..."`) or in sections (`[zoom]` `client_id = "..."`); both mean CALSYNC_ZOOM_CLIENT_ID.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from platformdirs import user_config_dir

PREFIX = "CALSYNC_"
JOURNAL_DAYS = 90.0  # how long the change journal (the feed, each event's history) keeps a change


class ConfigError(ValueError):
    """The configuration file cannot be read; the message says which file and why."""


def config_path() -> Path:
    return Path(os.environ.get("CALSYNC_CONFIG") or Path(user_config_dir("calsync")) / "config.toml")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}".upper().replace("-", "_")
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}_"))
        else:
            flat[PREFIX + name] = str(value).lower() if isinstance(value, bool) else str(value)
    return flat


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """All CALSYNC_* settings: file first, then the environment on top."""
    file = Path(path) if path else config_path()
    settings: dict[str, str] = {}
    if file.exists():
        try:
            settings.update(_flatten(tomllib.loads(file.read_text())))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {file}: {exc}") from exc
    elif path:
        raise ConfigError(f"configuration file {file} does not exist")
    env = os.environ if environ is None else environ
    settings.update({k: v for k, v in env.items() if k.startswith(PREFIX)})
    return settings


def journal_days(settings: Mapping[str, str]) -> float:
    """Days the change journal keeps (CALSYNC_JOURNAL_DAYS, or the file's `journal_days` / `[journal]
    days`), JOURNAL_DAYS when unset; anything but a positive number is a ConfigError."""
    raw = settings.get(PREFIX + "JOURNAL_DAYS", "").strip()
    if not raw:
        return JOURNAL_DAYS
    try:
        days = float(raw)
    except ValueError:
        days = math.nan
    if not math.isfinite(days) or days <= 0:
        raise ConfigError(f"CALSYNC_JOURNAL_DAYS must be a positive number of days, not {raw!r}")
    return days
