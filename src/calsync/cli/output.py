"""Where every command writes: a Rich console for people, JSON on stdout for scripts, and one red
line on stderr for a mistake (never a traceback)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from calsync.views import jsonable

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print the error and return the exit to raise, so callers read `raise fail(...)`."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def print_json(value: Any) -> None:
    """The --json output of every command: stored values made JSON-able, in their own order."""
    sys.stdout.write(json.dumps(jsonable(value), indent=2, sort_keys=False) + "\n")


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """The human output of the listing commands: one Rich table, cells already text."""
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    console.print(table)
