"""Where every command writes: a Rich console for people, JSON on stdout for scripts, and one red
line on stderr for a mistake (never a traceback).

Tables (`print_table`, the one every listing command uses) never cut a value: piped, they are plain
tab-separated lines with a header row; on a terminal, long values fold onto more lines instead of
ending in an ellipsis. Text that came from outside (titles, names, error bodies) goes through
`clean`: control characters are shown escaped (`\\x1b`), so an event title cannot move the cursor,
clear the screen or retitle the terminal, and Rich markup in it is printed as written."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from calsync.safe_text import clean, markup_safe
from calsync.views import jsonable

__all__ = ["clean", "console", "err", "fail", "markup_safe", "print_block", "print_json", "print_table"]

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print the error and return the exit to raise, so callers read `raise fail(...)`. The message
    is printed as written (no markup) with control characters escaped: it often quotes outside text."""
    err.print(Text.assemble(("error:", "red"), " ", clean(message)))
    return typer.Exit(code)


def print_json(value: Any) -> None:
    """The --json output of every command: stored values made JSON-able, in their own order."""
    sys.stdout.write(json.dumps(jsonable(value), indent=2, sort_keys=False) + "\n")


Cell = str | Sequence[str]  # a list of strings: one cell of several lines (a calendar's bindings)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    """The human output of every listing command. Cells are text (outside text is escaped here).

    Piped (stdout not a terminal): the header and one tab-separated line per row, whole values, a
    cell of several lines joined with ", ". On a terminal: a Rich table whose columns fold long
    values (ids included) onto more lines rather than cut them."""
    if not console.is_terminal:
        out = ["\t".join(columns)]
        out += ["\t".join(_cell_text(cell, ", ") for cell in row) for row in rows]
        sys.stdout.write("".join(line + "\n" for line in out))
        return
    table = Table(*(Column(name, overflow="fold", no_wrap=False) for name in columns))
    for row in rows:
        table.add_row(*(Text(_cell_text(cell, "\n")) for cell in row))
    console.print(table)


def _cell_text(cell: Cell, joiner: str) -> str:
    if isinstance(cell, str):
        return clean(cell)
    return joiner.join(clean(part) for part in cell)


def print_block(title: str, fields: Sequence[tuple[str, str]]) -> None:
    """One record as a titled block of `label  value` lines (`calsync status`, `calsync sync`): it
    fits a narrow terminal, and a long value folds onto the next lines instead of being cut.
    `title` may hold markup; labels and values are plain text (escaped here)."""
    console.print(title, highlight=False)
    grid = Table.grid(Column(no_wrap=True), Column(overflow="fold"), padding=(0, 2), pad_edge=False)
    for label, value in fields:
        grid.add_row(Text("  " + label), Text(clean(value)))
    console.print(grid)
