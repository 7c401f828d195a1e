"""What the store's query modules share: the NotFound error, new ids, chunked IN lists and the
bulk INSERT of many rows. Imports nothing else of the store but its schema."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, Table
from sqlalchemy.exc import DBAPIError

from calsync.jsontext import dumps
from calsync.store.schema import UTCDateTime


class NotFound(LookupError):
    """A row the caller named does not exist."""


class _RandomIds:
    """128-bit random ids taken from the OS a block at a time: one getrandom() per 256 ids, not one
    per id. Each call releases the GIL, so a page of 500 new events paid 500 thread switches while
    the listing thread was parsing (a tenth of an initial sync's time on two cores)."""

    BLOCK = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = ""
        self._next = 0
        os.register_at_fork(after_in_child=self._forget)  # a child must never repeat its parent's ids

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._block, self._next = "", 0

    def take(self) -> str:
        with self._lock:
            if self._next >= len(self._block):
                self._block, self._next = os.urandom(16 * self.BLOCK).hex(), 0
            start = self._next
            self._next += 32
            return self._block[start : start + 32]


_ids = _RandomIds()


def new_id() -> str:
    """Stable ids: 32 lowercase hex characters (also valid Google base32hex event ids)."""
    return _ids.take()


def chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass(frozen=True)
class _BulkInsert:
    """One compiled bulk INSERT: its SQL, the row keys in parameter order, the bind processor of each
    parameter that has one (by position), and whether the SQL is a COPY (PostgreSQL's) rather than an
    INSERT for the driver's executemany (SQLite's)."""

    sql: str
    keys: tuple[str, ...]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    copy: bool = False


_bulk_inserts: dict[tuple[str, str, tuple[str, ...]], _BulkInsert | None] = {}


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows that all carry the same keys. The rows become parameter tuples here, a column
    at a time (itemgetter, then each processing column mapped through its bind processor): SQLAlchemy's
    generic path builds parameters row by row, and a generator over every value was a fifth of the
    store's time in an initial sync. On SQLite (positional parameters) the tuples go to the driver's
    executemany of the INSERT compiled once; on PostgreSQL (psycopg) they go to one COPY FROM STDIN,
    where psycopg's executemany sent a protocol message per row and converted each value in Python
    (three quarters of an initial sync's client CPU). Elsewhere, SQLAlchemy's own path."""
    if not rows:
        return
    keys = tuple(rows[0])
    cache_key = (conn.dialect.name, table.name, keys)
    if cache_key not in _bulk_inserts:
        _bulk_inserts[cache_key] = _compile_bulk_insert(conn, table, keys)
    bulk = _bulk_inserts[cache_key]
    if bulk is None:
        conn.execute(table.insert(), rows)
        return
    if set(map(len, rows)) != {len(keys)}:  # (a missing key raises KeyError below)
        raise ValueError(f"rows for {table.name} carry different columns")
    values: list[tuple[Any, ...]] = list(map(itemgetter(*bulk.keys), rows))
    if bulk.processors:
        columns: list[Any] = list(zip(*values, strict=True))
        for at, process in bulk.processors:
            columns[at] = map(process, columns[at])
        values = list(zip(*columns, strict=True))
    if bulk.copy:
        _copy(conn, bulk.sql, values)
    else:
        conn.exec_driver_sql(bulk.sql, values)


def _copy(conn: Connection, sql: str, values: list[tuple[Any, ...]]) -> None:
    """COPY the rows in, in the connection's transaction; the driver's error is raised as SQLAlchemy's
    (an IntegrityError stays one: callers catch it)."""
    dialect = conn.dialect
    raw = conn.connection.driver_connection
    try:
        with raw.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
            write = copy.write_row
            for row in values:
                write(row)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error) from exc


def _compile_bulk_insert(conn: Connection, table: Table, keys: tuple[str, ...]) -> _BulkInsert | None:
    dialect = conn.dialect
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    copy = dialect.name == "postgresql" and dialect.driver == "psycopg"
    if copy:
        # a column left out with a default made in Python would need it filled in: SQLAlchemy's path
        if compiled.insert_prefetch or len(keys) < 2:
            return None
        order: Sequence[str] = keys
        quote = dialect.identifier_preparer.quote
        sql = f"COPY {dialect.identifier_preparer.format_table(table)} ({', '.join(map(quote, keys))}) FROM STDIN"
    else:
        positions = compiled.positiontup
        if positions is None or set(positions) != set(keys):  # named parameters, or column defaults to fill in
            return None
        if len(positions) < 2:  # (itemgetter of one key gives the value, not a tuple)
            return None
        order, sql = positions, compiled.string
    processors = []
    for at, key in enumerate(order):
        column_type = table.c[key].type
        impl = column_type.dialect_impl(dialect)  # (JsonType is JSONB on PostgreSQL)
        process: Callable[[Any], Any] | None = impl.bind_processor(dialect)
        if process is None:
            continue
        if isinstance(column_type, UTCDateTime):
            process = _same_as_last(process)
        elif isinstance(impl, JSON) and impl.none_as_null and getattr(dialect, "_json_serializer", None) is None:
            process = _json_text(process)
        processors.append((at, process))
    return _BulkInsert(sql, tuple(order), tuple(processors), copy)


def _json_text(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A JSON column's processor for the dialect's default serializer (json.dumps): plain dicts and
    lists by jsontext.dumps (the same text, quicker), None as SQL NULL (the columns are none_as_null),
    anything else (JSON.NULL, null()) by SQLAlchemy's own processor."""

    def run(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is dict or type(value) is list:
            return dumps(value)
        return process(value)

    return run


def _same_as_last(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A time column's processor that reuses its last answer for the same (immutable) datetime: a
    page's rows share one `now`, so 1,000 rows cost one conversion, not 1,000."""
    memo: list[tuple[Any, Any]] = [(None, process(None))]  # (value, answer), swapped whole: threads share it

    def run(value: Any) -> Any:
        seen, answer = memo[0]
        if value is not seen:
            answer = process(value)
            memo[0] = (value, answer)
        return answer

    return run
