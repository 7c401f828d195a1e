"""The `calsync` command. `calsync sync` on a SQLite database that a running service owns is handed
to that service (one writer per SQLite file; and the service's engine is already warm); everything
else goes to the Typer CLI (calsync.cli).

Deciding this must cost next to nothing, so this module imports only the lightest parts of the
standard library (not pathlib, typing or urllib: together about a quarter of this command's own
start-up) and the two small modules that find the database and the service's record. The heavy
engine is imported only when this process does the work itself.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from calsync.service import runtime
from calsync.store.urls import default_url, sqlite_file

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing; type checkers know the name)
if TYPE_CHECKING:
    from typing import Any


class SyncArgs:
    """The options of `calsync sync` (see calsync.cli.sync), as far as delegation needs them."""

    __slots__ = ("bindings", "full", "force", "db", "config", "as_json", "local")  # noqa: RUF023 (the repr's order)

    def __init__(
        self,
        bindings: tuple[str, ...] = (),
        full: bool = False,
        force: bool = False,
        db: str | None = None,
        config: str | None = None,
        as_json: bool = False,
        local: bool = False,
    ) -> None:
        self.bindings = bindings
        self.full = full
        self.force = force
        self.db = db
        self.config = config
        self.as_json = as_json
        self.local = local

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SyncArgs) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value: unhashable (as __eq__ alone made it)

    def __repr__(self) -> str:
        return "SyncArgs(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__) + ")"


_FLAGS = {
    "--full": ("full", True),
    "--no-full": ("full", False),
    "--force": ("force", True),
    "--no-force": ("force", False),
    "--json": ("as_json", True),
    "--local": ("local", True),
}
_VALUES = {"--binding": "bindings", "--db": "db", "--config": "config"}


def parse_sync_args(args: list[str]) -> SyncArgs | None:
    """The options, or None for anything unusual (help, a typo, a missing value): the Typer CLI
    then runs and answers it as it always does."""
    options: dict[str, Any] = {"bindings": ()}
    rest = iter(args)
    for arg in rest:
        name, eq, inline = arg.partition("=")
        if name in _FLAGS and not eq:
            attribute, value = _FLAGS[name]
            options[attribute] = value
        elif name in _VALUES:
            value_text = inline if eq else next(rest, None)
            if value_text is None or value_text.startswith("--"):
                return None
            if name == "--binding":
                options["bindings"] += (value_text,)
            else:
                options[_VALUES[name]] = value_text
        else:
            return None
    return SyncArgs(**options)


def service_for(args: SyncArgs) -> runtime.ServiceRecord | None:
    """The running service that should do this sync, if any: same database, same settings file."""
    if args.local:
        return None
    if any(len(binding) != 32 for binding in args.bindings):
        return None  # a binding named by a prefix: the command resolves it, then syncs here (leased, as always)
    database = sqlite_file(args.db or default_url())
    record = runtime.read(database) if database else None
    if record is None:
        return None
    if args.config and os.path.realpath(args.config) != record.config:
        return None  # asked for other settings than the service runs with: do it here
    return record


class ServiceUnreachable(OSError):
    """The service's record is there but nothing accepts a connection at its address."""


class ServiceLost(OSError):
    """The service took the request, then the connection broke before a whole answer came."""


def ask_service(record: runtime.ServiceRecord, args: SyncArgs) -> tuple[int, dict[str, Any]]:
    """POST /control/sync and wait for the sync to finish: (HTTP status, JSON answer)."""
    host, port = service_address(record.url)
    body = json.dumps({"bindings": list(args.bindings) or None, "full": args.full, "force": args.force})
    status, raw = post(
        host,
        port,
        "/control/sync",
        body.encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {record.token}"},
    )
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {"detail": raw.decode("utf-8", "replace")[:500]}


def service_address(url: str) -> tuple[str, int]:
    """Host and port of the service's base URL, which the service itself wrote as
    http://HOST:PORT (HOST an IPv4 address, a name, or an IPv6 address in brackets)."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit() or (host.startswith("[") != host.endswith("]")):
        host, port = rest, "80"
    return host.strip("[]") or "127.0.0.1", int(port)


def post(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One HTTP/1.1 POST on its own connection, read to the close: (status, body).

    Written out rather than taken from http.client, whose import (email parsing, ssl) alone costs
    more than the rest of this decision; the one peer is our own service (uvicorn)."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{head}\r\n"
    ).encode("latin-1") + body
    try:
        conn = socket.create_connection((host, port))
    except OSError as exc:
        raise ServiceUnreachable(str(exc)) from exc
    chunks = []
    try:
        with conn:
            conn.sendall(request)
            while chunk := conn.recv(1 << 16):
                chunks.append(chunk)
    except OSError as exc:  # the sync may have run: doing it here as well could race the service
        raise ServiceLost(str(exc)) from exc
    answer = b"".join(chunks)
    header, separator, payload = answer.partition(b"\r\n\r\n")
    status_line = header.split(b"\r\n", 1)[0].split()
    if not separator or len(status_line) < 2 or not status_line[1].isdigit():
        raise ServiceLost(f"no complete HTTP answer ({answer[:80]!r})")
    if b"\r\ntransfer-encoding: chunked" in header.lower():
        try:
            payload = _unchunk(payload)
        except ValueError as exc:
            raise ServiceLost(f"a broken chunked answer ({exc})") from exc
    return int(status_line[1]), payload


def _unchunk(data: bytes) -> bytes:
    out: list[bytes] = []
    at = 0
    while True:
        line_end = data.index(b"\r\n", at)
        size = int(data[at:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[line_end + 2 : line_end + 2 + size])
        at = line_end + 2 + size + 2


def delegate_sync(args: SyncArgs, record: runtime.ServiceRecord) -> int | None:
    """Run the sync in the service and print its report; None when the service cannot be reached
    (this process then syncs itself)."""
    try:
        status, answer = ask_service(record, args)
    except ServiceUnreachable as exc:
        sys.stderr.write(f"calsync: the service at {record.url} does not answer ({exc}); syncing in this process\n")
        return None
    except ServiceLost as exc:
        sys.stderr.write(
            f"error: the connection to the calsync service at {record.url} broke during the sync ({exc}); "
            f"`calsync status` shows what it did\n"
        )
        return 1
    if status != 200:
        detail = answer.get("detail", answer)
        sys.stderr.write(f"error: the calsync service at {record.url} answered {status}: {detail}\n")
        return 1
    report = answer["report"]
    if args.as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        from rich.console import Console

        from calsync.report_text import print_report

        err = Console(stderr=True)
        err.print(f"synced by the calsync service at {record.url}")
        print_report(report, Console(), err)
    return 0 if answer["ok"] else 1


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["sync"]:
        args = parse_sync_args(argv[1:])
        record = service_for(args) if args else None
        if args and record:
            code = delegate_sync(args, record)
            if code is not None:
                sys.exit(code)
    from calsync.cli import app

    app()
