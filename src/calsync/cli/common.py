"""What several command groups share: the --db, --json and --config options, the database, the
conference systems and worker settings read from the config, and the heap settings of a syncing process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from calsync.budgets import BudgetSettingError, budgets_from_settings
from calsync.cli.output import fail
from calsync.conferencing import configured_adapters
from calsync.conferencing.base import ConferenceAdapter
from calsync.config import ConfigError, load_settings
from calsync.engine.collector import settle_heap as settle_heap  # (the commands that sync import it from here)
from calsync.engine.scheduler import WorkerSettings
from calsync.store import keys
from calsync.store.common import NotFound
from calsync.store.db import open_engine
from calsync.store.sealing import SecretKeyError

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL or SQLite file (default: $CALSYNC_DB, else a file in the user data dir)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config", help="TOML settings file (default: $CALSYNC_CONFIG, else config.toml in the user config dir)."
    ),
]


@contextmanager
def database(url: str | None, *, check_keys: bool = False, concurrency: int | None = None) -> Iterator[Engine]:
    """A migrated engine, with store errors turned into one clear line. A secret that cannot be
    opened (a missing or wrong key) is such an error too, never a traceback; with `check_keys` (a
    service starting) every key a stored secret needs must be at hand before anything runs."""
    try:
        engine = open_engine(url, concurrency)
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open database {url or '(default)'}: {exc}") from exc
    except SecretKeyError as exc:
        raise fail(f"cannot open database {url or '(default)'}: {exc}") from exc
    try:
        if check_keys:
            with engine.connect() as conn:
                keys.check_keys(conn)
        yield engine
    except (NotFound, SecretKeyError) as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()


def conference_adapters(config: str | None) -> dict[str, ConferenceAdapter]:
    """The conference systems the settings configure; a bad config file is a usage error (exit 2)."""
    try:
        return configured_adapters(load_settings(config))
    except ConfigError as exc:
        raise fail(str(exc), 2) from exc


def worker_settings(
    config: str | None,
    public_url: str | None,
    poll_interval: float | None,
    lease_seconds: float | None,
    concurrency: int | None = None,
    default_concurrency: int = 1,
) -> WorkerSettings:
    """Flags win over CALSYNC_* settings, which win over the defaults. CALSYNC_CONCURRENCY: bindings in
    flight at once in one process; CALSYNC_PER_ACCOUNT: at most this many of one account per claim;
    CALSYNC_REQUEST_BUDGET_<KIND>: budgets.py."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise fail(str(exc), 2) from exc
    defaults = WorkerSettings()

    def number(flag: float | None, key: str, default: float) -> float:
        if flag is not None:
            return flag
        try:
            return float(settings.get(key, default))
        except ValueError as exc:
            raise fail(f"{key} must be a number, not {settings[key]!r}", 2) from exc

    url = public_url or settings.get("CALSYNC_PUBLIC_URL") or None
    if url and not url.startswith(("http://", "https://")):
        raise fail(f"--public-url must be an http(s) URL, not {url!r}", 2)
    try:
        budgets = budgets_from_settings(settings)
    except BudgetSettingError as exc:
        raise fail(str(exc), 2) from exc
    width = int(number(concurrency, "CALSYNC_CONCURRENCY", default_concurrency))
    per_account = int(number(None, "CALSYNC_PER_ACCOUNT", defaults.per_account))
    if width < 1 or per_account < 1:
        raise fail("the concurrency (--concurrency, CALSYNC_CONCURRENCY) and CALSYNC_PER_ACCOUNT must be at least 1", 2)
    return WorkerSettings(
        poll_interval=number(poll_interval, "CALSYNC_POLL_INTERVAL", defaults.poll_interval),
        lease_seconds=number(lease_seconds, "CALSYNC_LEASE_SECONDS", defaults.lease_seconds),
        public_url=url,
        concurrency=width,
        per_account=per_account,
        budgets=budgets,
    )
