"""Real CalDAV servers for the tests: Radicale and Xandikos as subprocesses on loopback.

Import the fixtures into a test module (`from tests.caldav_servers import caldav_server, dav`).
`caldav_server` is session-scoped and parametrised over both servers (each starts once, with its
own temporary storage, and is stopped after the session); `dav` gives each test a fresh, empty
calendar collection on it and a plain-httpx client that changes it as *another* CalDAV client
would (it never goes through calsync).
"""
from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

SERVERS = ("radicale", "xandikos")
USERNAME, PASSWORD = "alice", "secret"


@dataclass
class CalDAVServer:
    """A running server: its root URL, the calendar home, and the process."""

    kind: str
    url: str
    home: str  # path of the calendar home of USERNAME
    process: subprocess.Popen[bytes]
    storage: Path
    log: Path
    username: str = USERNAME
    password: str = PASSWORD

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(kind: str, port: int, storage: Path) -> tuple[list[str], str]:
    """The command line and the calendar home path for one server kind."""
    if kind == "radicale":
        config = storage / "radicale.conf"
        config.write_text("")  # no system or user configuration leaks in
        return [
            sys.executable, "-m", "radicale", "--config", str(config),
            "--server-hosts", f"127.0.0.1:{port}",
            "--storage-filesystem-folder", str(storage / "collections"),
            "--auth-type", "none", "--logging-level", "warning",
        ], f"/{USERNAME}/"
    if kind == "xandikos":
        return [
            sys.executable, "-m", "xandikos", "serve", "--defaults", "-d", str(storage / "data"),
            "--state-dir", str(storage / "state"), "-l", "127.0.0.1", "-p", str(port), "--no-detect-systemd",
        ], "/user/calendars/"
    raise ValueError(kind)


def start_server(kind: str, timeout: float = 30.0) -> CalDAVServer:
    """Start one server on a free port and wait until it answers a PROPFIND."""
    storage = Path(tempfile.mkdtemp(prefix=f"calsync-{kind}-"))
    last_error = ""
    for _ in range(3):  # a free port can be taken between the probe and the server's bind
        port = _free_port()
        args, home = _command(kind, port, storage)
        log = storage / f"{kind}-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=storage)
        server = CalDAVServer(kind, f"http://127.0.0.1:{port}/", home, process, storage, log)
        atexit.register(server.stop)  # a safety net should the session end without its finaliser
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = httpx.request("PROPFIND", server.url + home.lstrip("/"), headers={"Depth": "0"},
                                       auth=(USERNAME, PASSWORD), timeout=2)
                if answer.status_code in (207, 404):
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        last_error = log.read_text(errors="replace")[-2000:]
        server.stop()
    shutil.rmtree(storage, ignore_errors=True)
    raise RuntimeError(f"{kind} did not start: {last_error}")


@pytest.fixture(scope="session", params=SERVERS)
def caldav_server(request: pytest.FixtureRequest) -> Iterator[CalDAVServer]:
    """Radicale, then Xandikos: each started once per session and stopped after it."""
    kind = str(request.param)
    if shutil.which(sys.executable) is None:  # pragma: no cover
        pytest.skip("no Python executable")
    try:
        __import__(kind)
    except ImportError:
        pytest.skip(f"{kind} is not installed: pip install -e '.[dev]'")
    server = start_server(kind)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.storage, ignore_errors=True)


# --- another client -----------------------------------------------------------------------------


def ics(uid: str, summary: str, start: datetime | None = None, *, hours: int = 1, body: str = "",
        extra_components: str = "") -> str:
    """A small VCALENDAR with one VEVENT; `body` adds content lines inside it."""
    begin = start or datetime(2026, 12, 1, 9, tzinfo=UTC)
    end = begin + timedelta(hours=hours)
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//other client//test//EN",
        "BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z",
        f"DTSTART:{begin:%Y%m%dT%H%M%SZ}", f"DTEND:{end:%Y%m%dT%H%M%SZ}", f"SUMMARY:{summary}",
        *[line for line in body.splitlines() if line.strip()],
        "END:VEVENT", *[line for line in extra_components.splitlines() if line.strip()], "END:VCALENDAR", "",
    ]
    return "\r\n".join(lines)


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
    http = httpx.Client(base_url=server.url, auth=(server.username, server.password), timeout=30)
    path = f"{server.home}{name or 'cal-' + uuid.uuid4().hex[:12]}/"
    body = (
        '<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        "<D:set><D:prop><D:displayname>Test calendar</D:displayname>"
        '<C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set>'
        "</D:prop></D:set></C:mkcalendar>"
    )
    answer = http.request("MKCALENDAR", path, content=body, headers={"Content-Type": "application/xml"})
    if answer.status_code not in (200, 201):  # some servers refuse properties in MKCALENDAR
        answer = http.request("MKCALENDAR", path)
    assert answer.status_code in (200, 201), (answer.status_code, answer.text)
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
