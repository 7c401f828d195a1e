"""`calsync db ...`: the database schema (every command migrates it on opening; this does only that)."""

from __future__ import annotations

import typer

from calsync.cli.common import DbOption, database
from calsync.cli.output import console

app = typer.Typer(help="The database.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or migrate the schema to the newest revision."""
    with database(db):
        pass
    console.print("database is at the newest schema")
