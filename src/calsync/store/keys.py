"""The sealed columns of the database and the work on all of them: which key ring a connection's
database uses, sealing and opening for the store modules, counting values per key, and re-sealing
everything under a new key (`calsync keys rotate`) while other processes keep working.

Sealed columns: accounts.credentials_sealed (the credentials as JSON), channels.token (the
secret a push channel's notifications carry), service_account_keys.key_sealed (a Google
service-account key, stored once for the accounts of every user it acts for) and
webhook_subscriptions.secret_sealed (an outbound webhook's signing secret). sealing.py holds the keys and the format.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, inspect, select, update

from calsync.store import sealing
from calsync.store.schema import accounts, channels, service_account_keys, webhook_subscriptions
from calsync.store.sealing import Keyring, SecretKeyMissing


@dataclass(frozen=True)
class SealedColumn:
    table: Table
    value: Column[Any]
    label: str  # "{id}" is the row's id: names the value in errors

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.value.name}"


SEALED: tuple[SealedColumn, ...] = (
    SealedColumn(accounts, accounts.c.credentials_sealed, "the credentials of account {id}"),
    SealedColumn(channels, channels.c.token, "the token of push channel {id}"),
    SealedColumn(service_account_keys, service_account_keys.c.key_sealed, "service-account key {id}"),
    SealedColumn(webhook_subscriptions, webhook_subscriptions.c.secret_sealed, "the signing secret of webhook {id}"),
)


@dataclass(frozen=True)
class _Where:
    """Which database a connection is on, as sealing.load and key_file_for take it."""

    database_file: str | None = None  # a SQLite file
    server: str | None = None  # a server database: host-port-name
    in_memory: bool = False


def _where(conn: Connection) -> _Where:
    url = conn.engine.url
    if conn.dialect.name != "sqlite":
        return _Where(server=f"{url.host or 'localhost'}-{url.port or 'default'}-{url.database or ''}")
    path = url.database or ""
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        return _Where(in_memory=True)
    return _Where(database_file=os.path.realpath(os.path.expanduser(path)))


def key_file(conn: Connection) -> str:
    """Where the key file of this connection's database is (for messages and tests)."""
    where = _where(conn)
    return str(sealing.key_file_for(where.database_file, where.server))


def keyring(conn: Connection, *, create: bool = False) -> Keyring:
    """The keys of this connection's database. With `create` (a value is about to be sealed), a
    missing key file is made, but only while nothing in the database is sealed: a new key beside
    values sealed under a lost one would hide the loss."""
    where = _where(conn)
    try:
        return sealing.load(where.database_file, server=where.server, in_memory=where.in_memory)
    except SecretKeyMissing:
        if not create:
            raise
        orphans = {kid for counts in sealed_counts(conn).values() for kid in counts if kid != "plain"}
        if orphans:
            ids = ", ".join(sorted(orphans))
            raise SecretKeyMissing(
                f"no secret key: {sealing.ENV_KEYS} is not set and there is no key file at "
                f"{key_file(conn)}, but the database holds values sealed under key {ids}; "
                "restore that key file or set the variable (a new key would leave them unreadable)"
            ) from None
        return sealing.load(where.database_file, server=where.server, in_memory=where.in_memory, create=True)


def seal(conn: Connection, plain: str) -> str:
    return keyring(conn, create=True).seal(plain)


def open_sealed(conn: Connection, sealed: str, what: str) -> str:
    """The plain text of a stored value; errors name `what` and where the key was looked for."""
    try:
        ring = keyring(conn)
    except SecretKeyMissing as exc:
        kid = sealing.sealed_key_id(sealed) or "?"
        raise SecretKeyMissing(f"{what} is sealed under key {kid}, but there is {exc}") from None
    return ring.open(sealed, what)


def sealed_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """column name -> key id -> how many values it seals ("plain" for values not sealed yet)."""
    counts: dict[str, dict[str, int]] = {}
    tables = set(inspect(conn).get_table_names())  # a migration may run this before a later table exists
    for column in SEALED:
        if column.table.name not in tables:
            continue
        for (value,) in conn.execute(select(column.value).where(column.value.is_not(None), column.value != "")):
            kid = sealing.sealed_key_id(value) or "plain"
            per_key = counts.setdefault(column.name, {})
            per_key[kid] = per_key.get(kid, 0) + 1
    return counts


def check_keys(conn: Connection) -> None:
    """Every key a stored value is sealed under is at hand, or the error that names the keys missing,
    how many values each seals and where calsync looked: a service refuses to start on it rather
    than fail account by account later."""
    counts = sealed_counts(conn)
    used: dict[str, int] = {}
    for per_key in counts.values():
        for kid, n in per_key.items():
            if kid != "plain":
                used[kid] = used.get(kid, 0) + n
    if not used:
        return
    try:
        ring = keyring(conn)
    except SecretKeyMissing as exc:
        raise SecretKeyMissing(f"{_describe(used)} sealed, but there is {exc}") from None
    missing = {kid: n for kid, n in used.items() if kid not in ring.ids}
    if missing:
        raise sealing.SecretKeyWrong(
            f"{_describe(missing)} sealed under keys that {ring.source} does not hold (it holds "
            f"{', '.join(ring.ids)}); restore the key file or {sealing.ENV_KEYS} that sealed them"
        )


def _describe(per_key: dict[str, int]) -> str:
    return "the database holds " + ", ".join(f"{n} value(s) under key {kid}" for kid, n in sorted(per_key.items()))


# --- re-sealing ------------------------------------------------------------------------------


@dataclass
class ResealReport:
    """One pass over every sealed column: values re-sealed, values a concurrent writer changed
    under us (left for the next pass), and the passes run."""

    resealed: int = 0
    raced: int = 0
    passes: int = 0
    per_column: dict[str, int] = field(default_factory=dict)


def reseal_pass(
    engine: Engine,
    *,
    batch_size: int = 200,
    report: ResealReport | None = None,
    pause: Callable[[], None] = lambda: None,
) -> ResealReport:
    """Every value not under the current key re-sealed under it (plain ones sealed), in batches of
    `batch_size`, each its own short transaction: read a batch, seal outside any transaction, then
    write each value only if it is still the one read (a compare-and-set: a value a worker replaced
    meanwhile is not overwritten, it is counted as raced and looked at again by the next pass)."""
    report = report or ResealReport()
    report.passes += 1
    for column in SEALED:
        id_column = column.table.c.id
        last = ""
        while True:
            with engine.connect() as conn:
                ring = keyring(conn)
                rows = conn.execute(
                    select(id_column, column.value)
                    .where(id_column > last, column.value.is_not(None), column.value != "")
                    .order_by(id_column)
                    .limit(batch_size)
                ).all()
            if not rows:
                break
            last = rows[-1][0]
            changes = []
            for row_id, value in rows:
                kid = sealing.sealed_key_id(value)
                if kid == ring.current_id:
                    continue
                what = column.label.format(id=row_id)
                changes.append((row_id, value, ring.reseal(value, what) if kid else ring.seal(value)))
            if not changes:
                continue
            with engine.begin() as conn:
                for row_id, old, new in changes:
                    done = conn.execute(
                        update(column.table).where(id_column == row_id, column.value == old).values({column.value: new})
                    ).rowcount
                    if done == 1:
                        report.resealed += 1
                        report.per_column[column.name] = report.per_column.get(column.name, 0) + 1
                    else:
                        report.raced += 1
            pause()
    return report


def stale_count(conn: Connection, ring: Keyring) -> int:
    """Values not sealed under `ring`'s current key (plain ones included)."""
    counts = sealed_counts(conn)
    return sum(n for per_key in counts.values() for kid, n in per_key.items() if kid != ring.current_id)


@dataclass
class Rotation:
    new_id: str
    retired: list[str]
    kept: list[str]
    report: ResealReport
    source: str


class RotationError(Exception):
    """Rotation cannot start or finish; the message says why and what to do."""


def rotate(
    engine: Engine, *, keep_old: bool = False, grace: float = 2.0, batch_size: int = 200, max_passes: int = 20
) -> Rotation:
    """With a key file: a new key goes first in it (the old ones still open), then `grace` seconds for
    running processes' seals in flight to land, then passes re-seal everything under the new key until
    one finds nothing left; then the old keys leave the file (unless `keep_old`). A value sealed under
    an old key after that (a process that still held the old file mid-write) puts them back and the
    passes run again. What this cannot see is a write sealed before the new key was written whose
    transaction commits only after that last count (one open for the whole rotation); `grace` is
    the time such a write is given. One rotation at a time per key file (sealing.changing).

    With CALSYNC_SECRET_KEY: no file to write, so it re-seals under the first key of the variable
    and says which keys no value needs any more."""
    with engine.connect() as conn:
        ring = keyring(conn)
    if ring.path is None:
        with engine.connect() as conn:
            stale = stale_count(conn, ring)
        if len(ring.keys) == 1 and stale == 0:
            raise RotationError(
                f"the keys come from {sealing.ENV_KEYS}, which calsync cannot change: make a new key "
                f"(`calsync keys generate`), set {sealing.ENV_KEYS}=<new key>,<current key> for every calsync "
                "process, then run `calsync keys rotate` again to re-seal everything under the new key"
            )
        report = _passes(engine, ring, batch_size, max_passes)
        return Rotation(ring.current_id, [], list(ring.ids[1:]), report, ring.source)
    path = ring.path
    with sealing.changing(path):
        with engine.connect() as conn:
            old = list(keyring(conn).keys)  # read again under the lock
        new = sealing.new_key()
        sealing.write_key_file(path, [new, *old])
        time.sleep(grace)
        with engine.connect() as conn:
            ring = keyring(conn)
        if ring.keys != (new, *old):
            raise RotationError(f"{path} changed while the new key was being written; nothing was dropped (run again)")
        report = _passes(engine, ring, batch_size, max_passes)
        if keep_old:
            return Rotation(ring.current_id, [], [sealing.key_id(k) for k in old], report, ring.source)
        for _ in range(3):
            sealing.write_key_file(path, [new])
            with engine.connect() as conn:
                left = stale_count(conn, keyring(conn))
            if not left:
                return Rotation(ring.current_id, [sealing.key_id(k) for k in old], [], report, ring.source)
            sealing.write_key_file(path, [new, *old])  # a late seal under an old key: take it along again
            time.sleep(grace)
            _passes(engine, ring, batch_size, max_passes, report)
    raise RotationError(f"values keep being sealed under the old keys; they stay in {path} (run again)")


def _passes(
    engine: Engine, ring: Keyring, batch_size: int, max_passes: int, report: ResealReport | None = None
) -> ResealReport:
    report = report or ResealReport()
    for _ in range(max_passes):
        reseal_pass(engine, batch_size=batch_size, report=report)
        with engine.connect() as conn:
            if stale_count(conn, ring) == 0:  # a raced value is stale or not: this counts it either way
                return report
    raise RotationError(f"values still not sealed under key {ring.current_id} after {max_passes} passes (run again)")


def retire_unused(engine: Engine) -> list[str]:
    """Drop from the key file every key no value is sealed under (after `rotate --keep-old`)."""
    with engine.connect() as conn:
        ring = keyring(conn)
    if ring.path is None:
        raise RotationError(f"the keys come from {sealing.ENV_KEYS}: remove unused ones from the variable yourself")
    path = ring.path
    with sealing.changing(path), engine.connect() as conn:
        ring = keyring(conn)
        used = {kid for per_key in sealed_counts(conn).values() for kid in per_key}
        keep = [k for i, k in enumerate(ring.keys) if i == 0 or sealing.key_id(k) in used]
        retired = [sealing.key_id(k) for k in ring.keys if k not in keep]
        if retired:
            sealing.write_key_file(path, keep)
    return retired
