"""Opening the database: URL resolution, SQLite pragmas, and schema migration with Alembic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError

from calsync.store.urls import default_url, normalise_url

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

MIGRATIONS = Path(__file__).with_name("migrations")
# the newest migration; a test checks it against Alembic's own head. Knowing it lets an up-to-date
# database open without importing and loading Alembic (a tenth of a second on every `calsync sync`).
SCHEMA_HEAD = "0017"


def pool_size_for(concurrency: int) -> tuple[int, int]:
    """(pool_size, max_overflow) of one process's connection pool for `concurrency` bindings in flight.

    A sync holds a connection only while it reads or writes the store, never while it waits on the
    provider, so a few connections serve many syncs; with dozens of threads sharing one interpreter,
    a thread may keep its connection a while waiting for its turn, and a pool as wide as the threads
    would then fill with connections doing nothing. Between 5 and 16, plus half again in overflow:
    64 syncs at once use at most 15 connections; a thread that finds none free waits for one."""
    size = min(16, max(5, concurrency // 8 + 2))
    return size, max(3, size // 2)


def make_engine(url: str, concurrency: int | None = None) -> Engine:
    """The engine, with one connection pool for the process; on a server database it is sized for
    `concurrency` bindings in flight (pool_size_for; None: SQLAlchemy's default of 5 + 10)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if concurrency is None:
        engine = create_engine(url)
    else:
        size, overflow = pool_size_for(concurrency)
        engine = create_engine(url, pool_size=size, max_overflow=overflow)
    _ping_after_rest(engine)
    return engine


# A server may have dropped a connection that sat idle in the pool (restart, idle timeout, failover):
# one that rested longer than this is pinged before use, and replaced if the ping fails. A busy
# worker reuses its connections within milliseconds, and pinging those (SQLAlchemy's pool_pre_ping)
# cost one more round trip per transaction, a fifth of a quiet poll's.
PING_AFTER_IDLE = 2.0
_RESTED = "calsync_checked_in_at"


def _ping_after_rest(engine: Engine) -> None:
    """Ping (the dialect's own ping) a connection that rested in the pool longer than PING_AFTER_IDLE
    when it is checked out; a failed ping makes the pool drop it and connect anew."""
    dialect = engine.dialect

    def rested(_dbapi_connection: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info[_RESTED] = time.monotonic()

    def ping(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        since = record.info.get(_RESTED)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return  # new (just connected), or back in the pool only a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's own error: the pool invalidates it and takes another
            raise DisconnectionError(f"a pooled connection was lost while idle: {type(exc).__name__}") from exc

    event.listen(engine, "checkin", rested)
    event.listen(engine, "checkout", ping)


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def stored_revision(engine: Engine) -> str | None:
    """The schema revision the database records (None for a new, empty database)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no alembic_version table yet
        return None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    if stored_revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command

    config = alembic_config()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # A batch migration rebuilds a table (copy, drop, rename); with foreign keys on, dropping
            # `calendars` would cascade to every event. SQLite ignores this pragma inside a
            # transaction, so it is set before the migration's own; every key is checked after it.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def open_engine(url: str | None = None, concurrency: int | None = None) -> Engine:
    """An engine on a migrated database (the only way production code gets one); `concurrency`:
    make_engine's pool sizing."""
    engine = make_engine(url or default_url(), concurrency)
    migrate(engine)
    return engine
