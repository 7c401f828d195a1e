"""Real CalDAV servers for the tests: Radicale and Xandikos as subprocesses on loopback.

Starting and stopping them (and `ics`) is `calsync.caldav_server`, shared with `calsync demo`.

Import the fixtures into a test module (`from tests.caldav_servers import caldav_server, dav`).
`caldav_server` is session-scoped and parametrised over both servers (each starts once, with its
own temporary storage, and is stopped after the session); `dav` gives each test a fresh, empty
calendar collection on it and a plain-httpx client that changes it as *another* CalDAV client
would (it never goes through calsync).
"""
from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from calsync import caldav_server as shared
from calsync.caldav_server import PASSWORD, USERNAME, CalDAVServer, ics, start_server

__all__ = [
    "PASSWORD",
    "SERVERS",
    "USERNAME",
    "CalDAVServer",
    "DavCalendar",
    "caldav_server",
    "dav",
    "ics",
    "make_calendar",
    "provider_options",
    "start_server",
]

SERVERS = shared.KINDS


@pytest.fixture(scope="session", params=SERVERS)
def caldav_server(request: pytest.FixtureRequest) -> Iterator[CalDAVServer]:
    """Radicale, then Xandikos: each started once per session and stopped after it."""
    kind = str(request.param)
    if shutil.which(sys.executable) is None:  # pragma: no cover
        pytest.skip("no Python executable")
    if not shared.available(kind):
        pytest.skip(f"{kind} is not installed: pip install -e '.[dev]'")
    server = start_server(kind)
    try:
        yield server
    finally:
        server.close()


# --- another client -----------------------------------------------------------------------------


@dataclass
class DavCalendar:
    """One fresh calendar collection, and raw HTTP access to it as some other CalDAV client."""

    server: CalDAVServer
    path: str  # the collection path, with a trailing slash: calsync's remote calendar id
    http: httpx.Client = field(repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    def href(self, name: str) -> str:
        return f"{self.path}{name}.ics"

    def put(self, name: str, text: str, *, if_match: str | None = None) -> str:
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if if_match:
            headers["If-Match"] = if_match
        answer = self.http.put(self.href(name), content=text.encode(), headers=headers)
        assert answer.status_code in (200, 201, 204), (answer.status_code, answer.text)
        return answer.headers.get("ETag") or self.get(name)[1]

    def get(self, name: str) -> tuple[str, str]:
        answer = self.http.get(self.href(name))
        answer.raise_for_status()
        return answer.text, answer.headers.get("ETag", "")

    def exists(self, name: str) -> bool:
        return self.http.get(self.href(name)).status_code == 200

    def delete(self, name: str) -> None:
        answer = self.http.delete(self.href(name))
        assert answer.status_code in (200, 204), (answer.status_code, answer.text)

    def names(self) -> set[str]:
        """Names (without .ics) of the collection's members, by a Depth-1 PROPFIND."""
        body = '<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getetag/></prop></propfind>'
        answer = self.http.request("PROPFIND", self.path, content=body,
                                   headers={"Depth": "1", "Content-Type": "application/xml"})
        assert answer.status_code == 207, answer.text
        import re
        from urllib.parse import unquote

        found = set()
        for href in re.findall(r"<(?:\w+:)?href>([^<]+)</(?:\w+:)?href>", answer.text):
            path = unquote(href.strip())
            if path.startswith("http"):
                path = "/" + path.split("/", 3)[3]
            if path != self.path and path.endswith(".ics"):
                found.add(path[len(self.path):-4])
        return found

    def seed(self, count: int, prefix: str = "seed") -> list[str]:
        names = []
        base = datetime(2026, 11, 1, 8, tzinfo=UTC)
        for i in range(count):
            name = f"{prefix}-{i:04d}"
            self.put(name, ics(f"{name}@other", f"{prefix} {i}", base + timedelta(hours=i)))
            names.append(name)
        return names


def make_calendar(server: CalDAVServer, name: str | None = None) -> DavCalendar:
    """MKCALENDAR a new collection under the user's calendar home."""
    http = server.client()
    path = shared.make_calendar(server, name or f"cal-{uuid.uuid4().hex[:12]}", http=http)
    return DavCalendar(server, path, http)


@pytest.fixture()
def dav(caldav_server: CalDAVServer) -> Iterator[DavCalendar]:
    """A fresh, empty calendar collection on the server (isolates tests sharing one server)."""
    calendar = make_calendar(caldav_server)
    try:
        yield calendar
    finally:
        calendar.http.close()


def provider_options(**overrides: Any) -> dict[str, Any]:
    """Options for CalDAVProvider in tests: quick retries."""
    from calsync.providers.http import RetryPolicy

    return {"retry": RetryPolicy(base_delay=0.05), **overrides}
