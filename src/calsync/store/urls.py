"""Database URLs: the default location and the accepted spellings.

Kept apart from `store.db` (and free of SQLAlchemy) because `calsync sync` resolves the database
before deciding whether a running service should do the work, and that decision must stay cheap.
"""

from __future__ import annotations

import os


def default_url() -> str:
    """CALSYNC_DB, else a SQLite file in the user's data directory."""
    env = os.environ.get("CALSYNC_DB")
    if env:
        return env
    from platformdirs import user_data_dir  # only here: most runs name their database

    folder = user_data_dir("calsync")
    os.makedirs(folder, exist_ok=True)
    return f"sqlite:///{os.path.join(folder, 'calsync.db')}"


def normalise_url(url: str) -> str:
    """Accept a bare file path as a SQLite database, and use psycopg 3 for postgresql:// URLs."""
    if "://" not in url:
        return f"sqlite:///{os.path.realpath(os.path.expanduser(url))}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite database URL (absolute, symlinks resolved), or None for other databases
    and in-memory ones. os.path rather than pathlib: `calsync sync` calls this before deciding who
    syncs, and importing pathlib alone is a tenth of that decision."""
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return os.path.realpath(os.path.expanduser(path))
