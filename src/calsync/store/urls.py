"""Database URLs: the default location and the accepted spellings.

Kept apart from `store.db` (and free of SQLAlchemy) because `calsync sync` resolves the database
before deciding whether a running service should do the work, and that decision must stay cheap.
"""
from __future__ import annotations

import os
from pathlib import Path


def default_url() -> str:
    """CALSYNC_DB, else a SQLite file in the user's data directory."""
    env = os.environ.get("CALSYNC_DB")
    if env:
        return env
    from platformdirs import user_data_dir  # only here: most runs name their database

    folder = Path(user_data_dir("calsync"))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'calsync.db'}"


def normalise_url(url: str) -> str:
    """Accept a bare file path as a SQLite database, and use psycopg 3 for postgresql:// URLs."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL (absolute), or None for other databases and in-memory ones."""
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).expanduser().resolve()
