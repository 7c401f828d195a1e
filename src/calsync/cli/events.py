"""`calsync events ...`: the events of the local store, as the engine keeps them."""

from __future__ import annotations

from typing import Annotated

import typer

from calsync.cli.common import DbOption, JsonOption, database
from calsync.cli.output import fail, print_json, print_table
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.views import event_json

app = typer.Typer(help="Events in the local store.", no_args_is_help=True)


@app.command("list")
def events_list(
    calendar: Annotated[str | None, typer.Option(help="Only this local calendar.")] = None,
    include_deleted: Annotated[bool, typer.Option(help="Show tombstones too.")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List events of the local store, by start time."""
    with database(db) as engine, engine.begin() as conn:
        if calendar and not account_store.calendar_exists(conn, calendar):
            raise fail(f"no local calendar with id {calendar!r}")
        rows = event_store.list_events(conn, calendar_id=calendar, include_deleted=include_deleted)
    if as_json:
        print_json([event_json(r) for r in rows])
        return
    print_table(
        ("start", "end", "title", "status", "v", "source", "id"),
        (
            (
                r["start"],
                r["end"],
                r["title"],
                r["status"] + (" (deleted)" if r["deleted"] else ""),
                str(r["version"]),
                r["updated_at_source"],
                r["id"],
            )
            for r in rows
        ),
    )
