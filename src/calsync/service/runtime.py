"""The record a running service leaves beside its SQLite database, so `calsync sync` finds it.

SQLite has one writer: while `calsync serve` owns a database file, a second process syncing the
same file competes for its lock and races the service's workers. So the service writes
`<database>.service` (its URL, pid, settings file and a secret for its control endpoint, readable
by the owner only) and `calsync sync` hands the work to it. The module uses the standard library
only: the client side runs before anything heavy is imported.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

SUFFIX = ".service"


class ServiceRecord(NamedTuple):
    url: str  # base URL of the service, e.g. http://127.0.0.1:8000
    pid: int
    token: str  # secret the control endpoint asks for (Bearer)
    config: str | None  # the settings file the service resolved, absolute


def record_path(database: Path) -> Path:
    return database.with_name(database.name + SUFFIX)


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


def read(database: Path) -> ServiceRecord | None:
    """The live service of this database, or None (no record, unreadable, or its process is gone)."""
    try:
        data = json.loads(record_path(database).read_text())
        record = ServiceRecord(url=str(data["url"]), pid=int(data["pid"]), token=str(data["token"]),
                               config=data.get("config"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if pid_alive(record.pid) else None


def claim(database: Path, record: ServiceRecord) -> None:
    """Write the record, refusing when another live service already serves this database."""
    current = read(database)
    if current is not None and current.pid != record.pid:
        raise RuntimeError(f"another calsync service (pid {current.pid}) serves {database} at {current.url}")
    path = record_path(database)
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record._asdict(), out)
    os.replace(temporary, path)


def release(database: Path, pid: int) -> None:
    """Remove the record if it is still this process's."""
    path = record_path(database)
    try:
        if int(json.loads(path.read_text())["pid"]) == pid:
            path.unlink()
    except (OSError, ValueError, KeyError, TypeError):
        pass
