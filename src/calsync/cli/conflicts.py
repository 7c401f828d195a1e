"""`calsync conflicts ...`: events changed on both sides, listed and settled (engine.conflicts decides
what settling means)."""

from __future__ import annotations

from typing import Annotated

import typer

from calsync.cli.common import DbOption, JsonOption, database
from calsync.cli.ids import resolve_id
from calsync.cli.output import console, fail, print_json, print_table
from calsync.engine.conflicts import ConflictChanged, ConflictResolved, resolve_conflict
from calsync.store import conflicts as conflict_store
from calsync.store.journal import Author

app = typer.Typer(help="Events changed on both sides that wait for a decision.", no_args_is_help=True)


@app.command("list")
def conflicts_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Open conflicts with both sides."""
    with database(db) as engine, engine.begin() as conn:
        rows = conflict_store.list_conflicts(conn)
    if as_json:
        print_json(rows)
        return
    print_table(
        ("id", "event", "binding", "kind", "local title", "remote title"),
        (
            (
                r["id"],
                r["event_id"],
                r["binding_id"],
                r["kind"],
                (r["local"] or {}).get("title", "(deleted)"),
                (r["remote"] or {}).get("title", "(deleted)"),
            )
            for r in rows
        ),
    )


@app.command("resolve")
def conflicts_resolve(
    conflict_id: str,
    keep: Annotated[str, typer.Option(help="Which side wins: local or remote.")],
    remote_etag: Annotated[
        str | None,
        typer.Option(
            help="Refuse if the remote side is no longer the one with this ETag (as `calsync conflicts` showed it)."
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Settle a conflict; the held changes are released and the next sync carries the outcome."""
    if keep not in ("local", "remote"):
        raise fail("--keep must be local or remote", 2)
    with database(db) as engine:
        with engine.connect() as conn:
            conflict_id = resolve_id(conn, "conflict", conflict_id)
        try:
            row = resolve_conflict(
                engine, conflict_id, keep=keep, remote_etag=remote_etag, author=Author("local", "cli")
            )
        except (ConflictResolved, ConflictChanged) as exc:
            raise fail(str(exc)) from exc
    if as_json:
        print_json(row)
    else:
        console.print(
            f"conflict {conflict_id} resolved: kept {keep}; run `calsync sync` to carry it out", highlight=False
        )
