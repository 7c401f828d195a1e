"""`calsync events ...`: the events of the local store, as the engine keeps them."""

from __future__ import annotations

from typing import Annotated

import typer

from calsync.cli.common import DbOption, JsonOption, database
from calsync.cli.ids import resolve_id
from calsync.cli.output import console, err, fail, print_json, print_table
from calsync.engine import history
from calsync.store import events as event_store
from calsync.store.common import NotFound
from calsync.store.journal import Author
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


CLI_AUTHOR = Author("local", "cli")


@app.command("history")
def events_history(event_id: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every kept change of one event, oldest first: version, who, when, what changed."""
    with database(db) as engine:
        with engine.begin() as conn:
            event_id = resolve_id(conn, "event", event_id)
        try:
            entries = history.entries(engine, event_id)
        except NotFound as exc:
            raise fail(str(exc)) from exc
    if as_json:
        print_json(entries)
        return
    print_table(
        ("v", "kind", "side", "author", "at", "changes"),
        (
            (
                str(e["version"]),
                e["kind"],
                e["side"],
                e["author"],
                e["at"] or "",
                "; ".join(f"{name}: {c['from']!r} -> {c['to']!r}" for name, c in e["changes"].items())
                or ", ".join(e["fields"]),
            )
            for e in entries
        ),
    )


@app.command("restore")
def events_restore(
    event_id: str,
    version: Annotated[int, typer.Option(help="The version whose content the event takes again.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make the event's next version equal to an old one; the next sync pushes it to every binding."""
    with database(db) as engine:
        with engine.begin() as conn:
            event_id = resolve_id(conn, "event", event_id)
        try:
            done = history.restore(engine, event_id, version, author=CLI_AUTHOR)
        except (NotFound, history.VersionNotKept, history.RestoreRefused) as exc:
            raise fail(str(exc)) from exc
    if as_json:
        print_json({"event_id": done.event_id, "version": done.version, "changed": done.changed})
    elif done.changed:
        console.print(
            f"event {event_id} is at version {done.version}, restored from version {version}", highlight=False
        )
    else:
        console.print(
            f"event {event_id} already has the content of version {version}: nothing changed", highlight=False
        )
