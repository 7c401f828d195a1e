"""`calsync events ...`: the events of the local store, as the engine keeps them."""

from __future__ import annotations

from typing import Annotated

import typer

from calsync.cli.common import DbOption, JsonOption, database
from calsync.cli.ids import resolve_id
from calsync.cli.output import err, print_json, print_table
from calsync.store import events as event_store
from calsync.views import event_json

app = typer.Typer(help="Events in the local store.", no_args_is_help=True)

SCREENFUL = 20  # events a table shows unless told otherwise


@app.command("list")
def events_list(
    calendar: Annotated[str | None, typer.Option(help="Only this local calendar (its id or a unique prefix).")] = None,
    include_deleted: Annotated[bool, typer.Option(help="Show tombstones too.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help=f"Show the first N events (default {SCREENFUL}; with --json, all)."),
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Show every event.")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List events of the local store, by start time: a screenful unless --limit or --all; a table
    says on standard error how many more there are."""
    with database(db) as engine, engine.begin() as conn:
        if calendar:
            calendar = resolve_id(conn, "calendar", calendar)
        rows = event_store.list_events(conn, calendar_id=calendar, include_deleted=include_deleted)
    shown = len(rows) if show_all or (as_json and limit is None) else (limit or SCREENFUL)
    more = len(rows) - shown
    rows = rows[:shown]
    if as_json:
        print_json([event_json(r) for r in rows])
    else:
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
    if more > 0:
        err.print(f"{more} more event(s) not shown: --limit N shows more, --all shows every one", highlight=False)
