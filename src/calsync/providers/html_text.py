"""HTML bodies <-> plain-text descriptions.

Outlook stores every event body as an HTML document (a plain-text body written by another client
comes back wrapped in ``<html><head><meta ...>``). calsync's description is plain text, because it
travels to Google, CalDAV and conference agendas, where markup is noise. `html_to_text` renders what a
reader sees (block elements and ``<br>`` break lines, runs of whitespace are one space, head / style /
script are dropped); `text_to_html` is its inverse for text it produced, so our own writes read back
unchanged and cause no echo.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_BLOCKS = frozenset(
    {
        "p",
        "div",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "ul",
        "ol",
        "blockquote",
        "pre",
        "section",
        "article",
        "header",
        "footer",
    }
)
_HIDDEN = frozenset({"head", "style", "script", "title"})
_SPACE = re.compile(r"[ \t\r\n\f]+")


class _Renderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def _newline(self) -> None:
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCKS:
            self._newline()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self._newline()

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(_SPACE.sub(" ", data))


def html_to_text(markup: str) -> str:
    """The text a reader sees in `markup`: lines kept, the blank space markup adds around them dropped."""
    plain = _PLAIN_DOCUMENT.fullmatch(markup)
    if plain is None:
        return parsed_text(markup)
    return _laid_out("\n".join(_SPACE.sub(" ", html.unescape(line)) for line in plain.group(1).split("<br>")))


def parsed_text(markup: str) -> str:
    """html_to_text by the HTML parser, whatever the markup (html_to_text takes a shorter way for
    the plain document below, which must read the same)."""
    renderer = _Renderer()
    renderer.feed(markup)
    renderer.close()
    return _laid_out("".join(renderer.parts))


def _laid_out(rendered: str) -> str:
    # spaces that matter were written as &nbsp; (see text_to_html): only plain ones are layout
    return "\n".join(line.strip(" ") for line in rendered.split("\n")).strip("\n").replace("\xa0", " ")


# The document Outlook makes of a plain-text body (and the Graph emulator of every seeded one): a
# head of <meta> tags, then text broken by <br> only. It reads as its lines, character references
# resolved, exactly as the parser reads it (tests/test_graph_mapping.py holds the two to each other),
# without the pure-Python parser: that was a sixth of a Graph initial sync's client CPU.
_PLAIN_DOCUMENT = re.compile(
    r"[ \t\r\n]*<html>[ \t\r\n]*<head>(?:[ \t\r\n]*<meta [^<>]*>)*[ \t\r\n]*</head>[ \t\r\n]*<body>"
    r"([^<]*(?:<br>[^<]*)*)</body>[ \t\r\n]*</html>[ \t\r\n]*"
)


def _keep_spaces(line: str) -> str:
    """Spaces a reader would lose (at either end of a line, or beyond the first of a run) as &nbsp;."""
    body = line.strip(" ")
    if not body:
        return "&nbsp;" * len(line)
    lead, trail = len(line) - len(line.lstrip(" ")), len(line) - len(line.rstrip(" "))
    inner = re.sub(r"  +", lambda m: " " + "&nbsp;" * (len(m.group(0)) - 1), body)
    return "&nbsp;" * lead + inner + "&nbsp;" * trail


def text_to_html(text: str) -> str:
    """HTML that `html_to_text` reads back as `text` (less leading and trailing blank lines; a tab
    reads back as four spaces)."""
    plain = text.replace("\r\n", "\n").replace("\t", "    ")
    lines = html.escape(plain, quote=False).split("\n")
    return "<br>".join(_keep_spaces(line) for line in lines)
