"""Text that came from outside (event titles, names, error bodies from a provider), made safe to print
on a terminal: control characters (C0, DEL, C1; ESC among them) are shown escaped (`\\x1b`), so a
title cannot move the cursor, clear the screen or retitle the terminal. Standard library and Rich's
markup escape only: `calsync sync` handed to a running service prints its report with this."""

from __future__ import annotations

import re

from rich.markup import escape as escape_markup

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def clean(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with control characters shown as escapes (`\\x1b`, `\\n`); a newline kept as is with
    `keep_newlines`. None is an empty string."""
    if text is None:
        return ""

    def visible(match: re.Match[str]) -> str:
        char = match.group()
        if keep_newlines and char == "\n":
            return char
        return _NAMED.get(char) or f"\\x{ord(char):02x}"

    return _CONTROL.sub(visible, str(text))


def markup_safe(text: object) -> str:
    """Outside text for a string Rich reads markup in: `clean`ed and its `[...]` quoted."""
    return escape_markup(clean(text))
