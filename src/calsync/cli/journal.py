"""`calsync journal ...`: the change journal behind the change feed and each event's history
(store/journal.py). `prune` applies the retention by hand; `calsync serve` and `calsync worker`
also prune every hour."""

from __future__ import annotations

from typing import Annotated

import typer

from calsync.cli.common import ConfigOption, DbOption, JsonOption, database
from calsync.cli.output import console, fail, print_json
from calsync.config import ConfigError, journal_days, load_settings
from calsync.engine import journal_upkeep

app = typer.Typer(help="The change journal (the change feed, each event's history).", no_args_is_help=True)


@app.command("prune")
def journal_prune(
    days: Annotated[
        float | None,
        typer.Option(help="Keep the changes of the last DAYS days (default: CALSYNC_JOURNAL_DAYS, else 90).", min=0),
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete the journal's changes older than the retention. A feed reader whose cursor is older
    than what is left gets 410 and starts again from a snapshot; history keeps what is left."""
    if days is None:
        try:
            days = journal_days(load_settings(config))
        except ConfigError as exc:
            raise fail(str(exc), 2) from exc
    elif days <= 0:
        raise fail("--days must be more than 0", 2)
    with database(db) as engine:
        removed = journal_upkeep.prune(engine, days)  # as the services' hourly upkeep does
    if as_json:
        print_json({"pruned": removed, "days": days})
    else:
        console.print(f"pruned {removed} change(s) older than {days:g} day(s)", highlight=False)
