"""`calsync conference ...`: video conferences calsync creates and keeps in step with their events."""

from __future__ import annotations

from typing import Annotated, Any, cast

import httpx
import typer

from calsync.cli.common import (
    ConfigOption,
    DbOption,
    JsonOption,
    conference_adapters,
    database,
)
from calsync.cli.ids import resolve_id
from calsync.cli.output import console, fail, markup_safe, print_json, print_table
from calsync.conferencing.base import ConferenceError
from calsync.engine.conferences import ConferenceEngine, ConferenceWorkError
from calsync.engine.pool import ProviderPool
from calsync.providers.base import ProviderError
from calsync.statuses import ConferenceState
from calsync.store import conferences as conference_store
from calsync.store.rows import ConferenceRow
from calsync.views import jsonable

app = typer.Typer(help="Video conferences kept in step with their events.", no_args_is_help=True)


def conference_json(row: ConferenceRow) -> dict[str, Any]:
    """A conference row as the CLI shows it (the adapter's own state stays inside)."""
    return {
        "id": row["id"],
        "event_id": row["event_id"],
        "provider": row["provider"],
        "conference_id": row["conference_id"],
        "join_url": row["join_url"],
        "state": row["state"],
        "last_synced_at": row["last_synced_at"],
        "last_error": row["last_error"],
    }


@app.command("create")
def conference_create(
    event_id: str,
    provider: Annotated[str, typer.Option(help="Conference system: zoom, webhook or jitsi (as configured).")],
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a meeting for an event and put it on the calendar event."""
    adapters = conference_adapters(config)
    with database(db) as engine:
        with engine.connect() as conn:
            event_id = resolve_id(conn, "event", event_id)
        pool = ProviderPool(engine)
        try:
            row = ConferenceEngine(engine, adapters, pool).create(event_id, provider)
        except (ConferenceWorkError, ConferenceError, ProviderError, httpx.HTTPError) as exc:
            raise fail(str(exc)) from exc
        finally:
            pool.close()
            for adapter in adapters.values():
                adapter.close()
    if as_json:
        print_json(conference_json(row))
    else:
        console.print(
            markup_safe(f"{row['provider']} conference {row['conference_id']}: {row['join_url']}"),
            highlight=False,
            soft_wrap=True,
        )


@app.command("list")
def conference_list(
    state: Annotated[str | None, typer.Option(help="Only active or deleted ones.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Conferences calsync manages, with their state."""
    if state not in (None, "active", "deleted"):
        raise fail("--state must be active or deleted", 2)
    listed = cast("ConferenceState | None", state)  # checked just above
    with database(db) as engine, engine.begin() as conn:
        rows = [conference_json(r) for r in conference_store.list_conferences(conn, listed)]
    if as_json:
        print_json(rows)
        return
    print_table(
        ("event", "provider", "conference id", "state", "join url", "last synced"),
        (
            (
                r["event_id"],
                r["provider"],
                r["conference_id"],
                r["state"],
                r["join_url"] or "",
                jsonable(r["last_synced_at"]) or "",
            )
            for r in rows
        ),
    )
