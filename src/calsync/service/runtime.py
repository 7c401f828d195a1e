"""The record a running service leaves beside its SQLite database, so `calsync sync` finds it.

SQLite has one writer: while `calsync serve` owns a database file, a second process syncing the
same file competes for its lock and races the service's workers. So the service writes
`<database>.service` (its URL, pid, settings file and a secret for its control endpoint, readable
by the owner only) and `calsync sync` hands the work to it. The module uses the lightest parts of
the standard library (os.path, collections, json; not pathlib or typing, each a few milliseconds of
every `calsync sync`): the client side runs before anything heavy is imported.
"""

from __future__ import annotations

import json
import os
from collections import namedtuple

SUFFIX = ".service"
TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing; type checkers know the name)

if TYPE_CHECKING:
    from typing import NamedTuple

    StrPath = str | os.PathLike[str]

    class ServiceRecord(NamedTuple):
        url: str  # base URL of the service, e.g. http://127.0.0.1:8000
        pid: int
        token: str  # secret the control endpoint asks for (Bearer)
        config: str | None  # the settings file the service resolved, absolute
else:
    ServiceRecord = namedtuple("ServiceRecord", ["url", "pid", "token", "config"])  # noqa: PYI024 (no typing here)


def record_path(database: StrPath) -> str:
    return os.fspath(database) + SUFFIX


def new_token() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def read(database: StrPath) -> ServiceRecord | None:
    """The live service of this database, or None (no record, unreadable, or its process is gone)."""
    try:
        with open(record_path(database), encoding="utf-8") as source:
            data = json.load(source)
        record = ServiceRecord(
            url=str(data["url"]), pid=int(data["pid"]), token=str(data["token"]), config=data.get("config")
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if pid_alive(record.pid) else None


def claim(database: StrPath, record: ServiceRecord) -> None:
    """Write the record, refusing when another live service already serves this database."""
    current = read(database)
    if current is not None and current.pid != record.pid:
        raise RuntimeError(f"another calsync service (pid {current.pid}) serves {database} at {current.url}")
    path = record_path(database)
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(record._asdict(), out)
    os.replace(temporary, path)


def release(database: StrPath, pid: int) -> None:
    """Remove the record if it is still this process's."""
    path = record_path(database)
    try:
        with open(path, encoding="utf-8") as source:
            mine = int(json.load(source)["pid"]) == pid
        if mine:
            os.unlink(path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
