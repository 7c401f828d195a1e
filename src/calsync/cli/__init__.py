"""The calsync command line (Typer + Rich): the root app, wiring one module per command group.

`calsync` itself starts in calsync.launch, which may hand `calsync sync` to a running service
before anything here is imported; everything else ends up in `app`."""

from __future__ import annotations

import typer

from calsync.cli import (
    accounts,
    calendars,
    conferences,
    conflicts,
    db,
    emulators,
    events,
    journal,
    keys,
    serve,
    sync,
    users,
)

__all__ = ["app", "main"]

app = typer.Typer(help="Keep calendars, and the video conferences on their events, in sync.", no_args_is_help=True)

# Commands first, then groups: the order `calsync --help` lists them in.
app.command("sync")(sync.sync)
app.command("status")(sync.status)
app.command("serve")(serve.serve)
app.command("worker")(serve.worker)
app.command("demo")(serve.demo)
app.add_typer(accounts.app, name="account")
app.add_typer(calendars.app, name="calendar")
app.add_typer(events.app, name="events")
app.add_typer(conflicts.app, name="conflicts")
app.add_typer(conferences.app, name="conference")
app.add_typer(emulators.app, name="emulator")
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(journal.app, name="journal")
app.add_typer(users.user_app, name="user")
app.add_typer(users.apikey_app, name="apikey")


def main() -> None:
    """The Typer app, as `python -m calsync.cli` runs it (no hand-over to a running service)."""
    app()
