"""Real CalDAV servers (Radicale, Xandikos) as child processes on loopback, with throwaway storage.

calsync speaks CalDAV to servers it does not ship, so `calsync demo` and the tests run real ones
rather than a stand-in: this module starts one on a free port, waits until it answers, and stops it
again. It imports nothing of calsync, like the emulators.

A server never outlives the process that started it: it runs under this module's `__main__`
(`python -m calsync.caldav_server STORAGE KIND ARGS...`), which removes STORAGE and exits as soon as
its stdin pipe closes, and the parent holds the other end, so even a SIGKILLed demo leaves no orphan
process and no storage behind.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import runpy
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

KINDS = ("radicale", "xandikos")
USERNAME, PASSWORD = "alice", "secret"


def available(kind: str) -> bool:
    """Whether the server's package is importable (both are optional dependencies)."""
    return importlib.util.find_spec(kind) is not None


@dataclass
class CalDAVServer:
    """A running server: its root URL, the calendar home of `username`, the process and its storage."""

    kind: str
    url: str
    home: str  # path of the calendar home of `username`, with a trailing slash
    process: subprocess.Popen[bytes]
    storage: Path
    log: Path
    username: str = USERNAME
    password: str = PASSWORD

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s); the storage stays for inspection."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdin is not None:
            self.process.stdin.close()

    def close(self) -> None:
        """Stop the process and remove its storage."""
        self.stop()
        shutil.rmtree(self.storage, ignore_errors=True)

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """A plain HTTP client on the server, authenticated as `username`."""
        return httpx.Client(base_url=self.url, auth=(self.username, self.password), timeout=timeout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(kind: str, port: int, storage: Path, username: str) -> tuple[list[str], str]:
    """The server's arguments (after `python -m calsync.caldav_server KIND`) and the calendar home."""
    if kind == "radicale":
        config = storage / "radicale.conf"
        config.write_text("")  # no system or user configuration leaks in
        return [
            "--config",
            str(config),
            "--server-hosts",
            f"127.0.0.1:{port}",
            "--storage-filesystem-folder",
            str(storage / "collections"),
            "--auth-type",
            "none",
            "--logging-level",
            "warning",
        ], f"/{username}/"
    if kind == "xandikos":
        return [
            "serve",
            "--defaults",
            "-d",
            str(storage / "data"),
            "--state-dir",
            str(storage / "state"),
            "-l",
            "127.0.0.1",
            "-p",
            str(port),
            "--no-detect-systemd",
        ], "/user/calendars/"
    raise ValueError(f"unknown CalDAV server {kind!r} (known: {', '.join(KINDS)})")


def start_server(
    kind: str = "radicale", *, username: str = USERNAME, password: str = PASSWORD, timeout: float = 30.0
) -> CalDAVServer:
    """Start one server on a free loopback port with fresh storage; return once it answers a PROPFIND."""
    if not available(kind):
        raise RuntimeError(f"{kind} is not installed")
    storage = Path(tempfile.mkdtemp(prefix=f"calsync-{kind}-"))
    last_error = ""
    for _ in range(3):  # a free port can be taken between the probe and the server's bind
        port = free_port()
        args, home = _command(kind, port, storage, username)
        log = storage / f"{kind}-{port}.log"
        with log.open("wb") as out:
            # (this module run by this interpreter, with arguments built above from a known server kind)
            process = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", __name__, str(storage), kind, *args],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=storage,
            )
        server = CalDAVServer(kind, f"http://127.0.0.1:{port}/", home, process, storage, log, username, password)
        atexit.register(server.stop)  # a safety net should the caller never stop it
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = httpx.request(
                    "PROPFIND",
                    server.url + home.lstrip("/"),
                    headers={"Depth": "0"},
                    auth=(username, password),
                    timeout=2,
                )
                if answer.status_code in (207, 404):
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        last_error = log.read_text(errors="replace")[-2000:]
        server.stop()
    shutil.rmtree(storage, ignore_errors=True)
    raise RuntimeError(f"{kind} did not start: {last_error}")


def make_calendar(
    server: CalDAVServer, name: str | None = None, display_name: str = "Test calendar", http: httpx.Client | None = None
) -> str:
    """MKCALENDAR a collection under the calendar home; returns its path (calsync's remote calendar id)."""
    client = http or server.client()
    try:
        path = f"{server.home}{name or 'cal-' + uuid.uuid4().hex[:12]}/"
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f"<D:set><D:prop><D:displayname>{display_name}</D:displayname>"
            '<C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set>'
            "</D:prop></D:set></C:mkcalendar>"
        )
        answer = client.request("MKCALENDAR", path, content=body, headers={"Content-Type": "application/xml"})
        if answer.status_code not in (200, 201):  # some servers refuse properties in MKCALENDAR
            answer = client.request("MKCALENDAR", path)
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"MKCALENDAR {path}: {answer.status_code} {answer.text[:300]}")
        return path
    finally:
        if http is None:
            client.close()


def ics(
    uid: str, summary: str, start: datetime | None = None, *, hours: int = 1, body: str = "", extra_components: str = ""
) -> str:
    """A small VCALENDAR with one VEVENT, as another CalDAV client would PUT it; `body` adds content
    lines inside the VEVENT, `extra_components` whole components after it."""
    begin = start or datetime(2026, 12, 1, 9, tzinfo=UTC)
    end = begin + timedelta(hours=hours)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//other client//test//EN",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20260101T000000Z",
        f"DTSTART:{begin:%Y%m%dT%H%M%SZ}",
        f"DTEND:{end:%Y%m%dT%H%M%SZ}",
        f"SUMMARY:{summary}",
        *[line for line in body.splitlines() if line.strip()],
        "END:VEVENT",
        *[line for line in extra_components.splitlines() if line.strip()],
        "END:VCALENDAR",
        "",
    ]
    return "\r\n".join(lines)


def _exit_when_parent_goes(storage: Path) -> None:
    """Block on the pipe from the parent; its end while we still run means the parent died without
    stopping us (a stop terminates us first): remove the storage it can no longer remove, and exit."""
    try:
        while os.read(sys.stdin.fileno(), 4096):
            pass
    except OSError:
        pass
    shutil.rmtree(storage, ignore_errors=True)
    os._exit(0)


def _run_child(argv: list[str]) -> None:
    """`python -m calsync.caldav_server STORAGE KIND ARGS...`: the server's own entry point, in this process."""
    storage, kind, args = Path(argv[0]), argv[1], argv[2:]
    if kind not in KINDS:
        raise SystemExit(f"unknown CalDAV server {kind!r}")
    threading.Thread(target=_exit_when_parent_goes, args=(storage,), daemon=True).start()
    sys.argv = [kind, *args]
    runpy.run_module(kind, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _run_child(sys.argv[1:])
