"""Partial responses: the `fields` parameter every Google API method takes, as Google documents it
("Working with partial resources", calendar/api/guides/performance).

Its syntax: fields separated by commas (`a,b`); `a/b` selects b inside a; `a(b,c)` selects b and c
inside a, whatever a holds (an object, or each object of an array); `*` selects everything at its
level. A selection that does not parse is a 400 before the method runs. Google also refuses the names
that its resource has no field for; the emulator does not (it keeps no schema of every resource),
and a name it does not find selects nothing.
"""

from __future__ import annotations

import re
from typing import Any

from calsync.emulators.google.errors import _invalid

# a name -> what is selected inside it (None: all of it)
Selection = dict[str, "Selection | None"]

_TOKEN = re.compile(r"\s*([A-Za-z0-9_$.@*-]+|[(),/])")


def parse_fields(text: str) -> Selection:
    """The selection `text` names; a malformed one raises Google's 400 invalidParameter."""
    tokens = _tokens(text)
    selection, position = _fields(tokens, 0, text)
    if position != len(tokens):
        raise _refused(text)
    return selection


def select(value: Any, selection: Selection | None) -> Any:
    """`value` with only what `selection` names (None: all of it); arrays are selected item by item."""
    if selection is None:
        return value
    if isinstance(value, list):
        return [select(item, selection) for item in value]
    if not isinstance(value, dict):
        return value
    if "*" in selection:  # every name, each with its own selection where one is named besides
        return {
            key: select(item, selection[key] if key in selection else selection["*"]) for key, item in value.items()
        }
    return {key: select(value[key], inner) for key, inner in selection.items() if key in value}


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].isspace():
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise _refused(text)
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _fields(tokens: list[str], position: int, text: str) -> tuple[Selection, int]:
    """fields := field (',' field)*"""
    selection: Selection = {}
    while True:
        position = _field(tokens, position, text, selection)
        if position < len(tokens) and tokens[position] == ",":
            position += 1
            continue
        return selection, position


def _field(tokens: list[str], position: int, text: str, into: Selection) -> int:
    """field := name ('/' name)* ['(' fields ')'], merged into `into`."""
    path: list[str] = []
    while True:
        if position >= len(tokens) or not _is_name(tokens[position]):
            raise _refused(text)
        path.append(tokens[position])
        position += 1
        if position < len(tokens) and tokens[position] == "/":
            position += 1
            continue
        break
    inner: Selection | None = None
    if position < len(tokens) and tokens[position] == "(":
        inner, position = _fields(tokens, position + 1, text)
        if position >= len(tokens) or tokens[position] != ")":
            raise _refused(text)
        position += 1
    _merge(into, path, inner)
    return position


def _merge(into: Selection, path: list[str], inner: Selection | None) -> None:
    """Add path (with `inner` at its end) to a selection: a name selected whole stays whole."""
    head, rest = path[0], path[1:]
    wanted = _nest(rest, inner)
    if head not in into:
        into[head] = wanted
        return
    held = into[head]
    if held is None or wanted is None:
        into[head] = None
        return
    for key, sub in wanted.items():
        _merge(held, [key], sub)


def _nest(path: list[str], inner: Selection | None) -> Selection | None:
    for name in reversed(path):
        inner = {name: inner}
    return inner


def _is_name(token: str) -> bool:
    return token not in ("(", ")", ",", "/")


def _refused(text: str) -> Exception:
    return _invalid(f"Invalid field selection {text}", "fields", reason="invalidParameter")
