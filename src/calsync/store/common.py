"""What the store's query modules share: the NotFound error, new ids, chunked IN lists and the
bulk INSERT of many rows. Imports nothing else of the store but its schema."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import add, itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Boolean, ColumnElement, Connection, Table, Text, any_, func, literal, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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


def one_of_chunks(conn: Connection, items: Sequence[str]) -> Iterator[Sequence[str]]:
    """The chunks a one_of lookup takes `items` in: all at once on PostgreSQL, whose one JSON text
    takes any count under one plan (a page of 2,500 in five statements cost five times SQLAlchemy's
    and the driver's per-statement work, the most of an initial sync's lookups); 500 at a time
    elsewhere, as chunks() (SQLite's IN list)."""
    if conn.dialect.name != "postgresql":
        yield from chunks(items)
    elif items:
        yield items


def one_of(conn: Connection, column: ColumnElement[Any], values: Sequence[str]) -> ColumnElement[bool]:
    """`column IN values` for a page's lookups. On PostgreSQL `column = ANY(array)`, the array made
    by the server from one JSON text: one statement text whatever the count (SQLAlchemy wrote out,
    and psycopg parsed again, 500 placeholders per chunk: a tenth of an initial sync's client CPU),
    one prepared plan, which uses the column's index for any length (tests/test_plan_statistics.py),
    and none of psycopg's per-item conversion of an array parameter (0.9 us a value; orjson's text
    costs 0.03). Elsewhere an IN list."""
    if conn.dialect.name == "postgresql":
        text = json_text(list(values))
        listed = func.jsonb_array_elements_text(sql_cast(literal(text, Text), JSONB)).table_valued("value")
        return column == any_(sql_cast(select(func.array_agg(listed.c.value)).scalar_subquery(), ARRAY(Text)))
    return column.in_(values)


@dataclass(frozen=True)
class _BulkInsert:
    """One bulk INSERT made for a table and a set of row keys: its SQL (a COPY on PostgreSQL, an
    INSERT for the driver's executemany on SQLite), which names the columns that need no conversion
    first (`plain`: a getter of their values as a tuple) and then the ones whose bind processor
    converts them (`processed`: key and the conversion of the column's values, _ColumnConvert)."""

    sql: str
    plain: Callable[[dict[str, Any]], tuple[Any, ...]]
    processed: tuple[tuple[str, _ColumnConvert], ...]
    copy: bool


# a column's values (one per row, in order) -> what the driver is given for them, as many
_ColumnConvert = Callable[[list[Any]], Iterable[Any]]


_bulk_inserts: dict[tuple[str, str, tuple[str, ...]], _BulkInsert | None] = {}


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows that all carry the same keys. The rows become parameter tuples here, in C
    (itemgetter for the plain columns, each converted column mapped through its bind processor, the
    two parts added): SQLAlchemy's generic path builds parameters row by row in Python. On PostgreSQL
    (psycopg) the tuples go to one COPY FROM STDIN, where psycopg's executemany sent a protocol
    message per row and converted each value in Python (three quarters of an initial sync's client
    CPU); on SQLite to the driver's executemany. Elsewhere, SQLAlchemy's own path."""
    if not rows:
        return
    keys = tuple(rows[0])
    cache_key = (conn.dialect.name, table.name, keys)
    if cache_key not in _bulk_inserts:
        _bulk_inserts[cache_key] = _bulk_insert(conn, table, keys)
    bulk = _bulk_inserts[cache_key]
    if bulk is None:
        conn.execute(table.insert(), rows)
        return
    if set(map(len, rows)) != {len(keys)}:  # (a missing key raises KeyError below)
        raise ValueError(f"rows for {table.name} carry different columns")
    values: Iterator[tuple[Any, ...]] = map(bulk.plain, rows)
    if bulk.processed:
        columns = (convert(list(map(itemgetter(key), rows))) for key, convert in bulk.processed)
        values = map(add, values, zip(*columns, strict=True))
    if bulk.copy:
        _copy(conn, bulk.sql, values)
    else:
        conn.exec_driver_sql(bulk.sql, list(values))


def _copy(conn: Connection, sql: str, values: Iterator[tuple[Any, ...]]) -> None:
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


def _bulk_insert(conn: Connection, table: Table, keys: tuple[str, ...]) -> _BulkInsert | None:
    """The bulk INSERT of rows with these keys, or None for SQLAlchemy's path: another driver, a key
    that is no column, or a column left out whose default Python would have to fill in."""
    dialect = conn.dialect
    copy = dialect.name == "postgresql" and dialect.driver == "psycopg"
    if not (copy or (dialect.name == "sqlite" and dialect.paramstyle == "qmark")):
        return None
    if not set(keys) <= set(table.c.keys()) or any(c.default is not None for c in table.c if c.key not in keys):
        return None
    plain: list[str] = []
    processed: list[tuple[str, _ColumnConvert]] = []
    for key in keys:
        column_type = table.c[key].type
        impl = column_type.dialect_impl(dialect)  # (JsonType is JSONB on PostgreSQL)
        process: Callable[[Any], Any] | None = impl.bind_processor(dialect)
        if process is None:
            plain.append(key)
            continue
        convert: _ColumnConvert = functools.partial(map, process)
        if isinstance(column_type, UTCDateTime):
            convert = _time_column(_same_as_last(_iso_text(process) if copy else process))
        elif isinstance(impl, Boolean):
            convert = _boolean_column(process)
        elif isinstance(impl, JSON) and impl.none_as_null and getattr(dialect, "_json_serializer", None) is None:
            convert = _json_column(_json_text(process, json_text if copy else dumps), by_orjson=copy)
        processed.append((key, convert))
    preparer = dialect.identifier_preparer
    columns = ", ".join(preparer.quote(table.c[key].name) for key in [*plain, *(key for key, _ in processed)])
    # (names of the schema's own tables and columns, quoted by the dialect: no outside text in the SQL)
    if copy:
        sql = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    else:
        sql = f"INSERT INTO {preparer.format_table(table)} ({columns}) VALUES ({', '.join('?' * len(keys))})"  # noqa: S608
    return _BulkInsert(sql, _tuple_getter(plain), tuple(processed), copy)


def _tuple_getter(keys: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """row -> the values of `keys` as a tuple (itemgetter of one key gives the value itself)."""
    if len(keys) > 1:
        return itemgetter(*keys)
    return lambda row: tuple(row[key] for key in keys)


def _json_text(process: Callable[[Any], Any], encode: Callable[[Any], str]) -> Callable[[Any], Any]:
    """A JSON column's processor for the dialect's default serializer (json.dumps): plain dicts and
    lists by `encode` (jsontext.dumps: the same text, quicker; json_text for PostgreSQL's JSONB,
    which keeps no text), None as SQL NULL (the columns are none_as_null), anything else (JSON.NULL,
    null()) by SQLAlchemy's own processor."""

    def run(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is dict:
            return encode(value) if value else "{}"
        if type(value) is list:
            return encode(value) if value else "[]"
        return process(value)

    return run


def json_text(value: Any) -> str:
    """JSON text for the database to parse (a JSONB column, a statement's JSON parameter), by orjson:
    PostgreSQL parses it into its own form (keys sorted, spacing dropped), so only the value counts,
    and orjson makes it in a fifth of json.dumps' time (an initial sync writes four JSON columns an
    event). What orjson refuses (a key that is no string, an integer beyond 64 bits, a lone
    surrogate) goes to jsontext.dumps, which takes it or raises as before. (orjson writes a float NaN
    as null where json.dumps writes NaN, which JSONB refuses.)"""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return dumps(value)


def _boolean_column(process: Callable[[Any], Any]) -> _ColumnConvert:
    """A boolean column's values through the processor's answers for None, True and False, worked
    out once and looked up in C (1 and 0 are True and False to it too). A column holding anything
    else goes through SQLAlchemy's own processor, which refuses it."""
    known = {value: process(value) for value in (None, True, False)}
    look_up = known.__getitem__

    def convert(values: list[Any]) -> Iterable[Any]:
        try:
            return list(map(look_up, values))
        except (KeyError, TypeError):  # (an unhashable value: a TypeError)
            return list(map(process, values))

    return convert


def _json_column(one: Callable[[Any], Any], *, by_orjson: bool) -> _ColumnConvert:
    """A JSON column's values by `one` (_json_text), None passed over without a call. `by_orjson`
    (PostgreSQL, json_text): a column of dicts and lists only (attendees, extra: every row has one)
    is written by orjson in C, no Python call per value, falling back to `one` for all of it where
    orjson refuses a value."""
    plain_types = frozenset({dict, list})

    def convert(values: list[Any]) -> Iterable[Any]:
        if by_orjson and plain_types.issuperset(map(type, values)):
            try:
                return list(map(bytes.decode, map(orjson.dumps, values)))
            except orjson.JSONEncodeError:
                pass
        return [value if value is None else one(value) for value in values]

    return convert


def _time_column(one: Callable[[Any], Any]) -> _ColumnConvert:
    """A time column's values: one conversion for the whole column where every row holds the same
    time (a page's rows share one `now`, and most hold no deletion time), else `one` for each."""

    def convert(values: list[Any]) -> Iterable[Any]:
        if values and values.count(values[0]) == len(values):  # (equal aware times: one instant, one text)
            return repeat(one(values[0]), len(values))
        return map(one, values)

    return convert


def _iso_text(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A time column's processor for COPY: the aware datetime as ISO 8601 text, which PostgreSQL
    reads into the same timestamptz. psycopg's dumper formats a datetime anew for every row (a
    microsecond each: four an event in an initial sync); text made once a page (_same_as_last) is
    copied as it is."""

    def run(value: Any) -> Any:
        stored = process(value)
        return stored.isoformat() if isinstance(stored, datetime) else stored

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
