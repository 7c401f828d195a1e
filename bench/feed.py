"""Change-feed throughput on SQLite and PostgreSQL: a journal of N changes (default 100,000) of one
user, numbered by the sequencer, then read to the end with limit 1000, straight from the store
(journal.read_feed) and through the service (GET /api/v1/changes over loopback HTTP, JSON and all).

    python bench/feed.py [--changes 100000] [--limit 1000] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

--pg (default: $CALSYNC_TEST_PG_URL) names a server on which a database of the bench's own is made and
dropped; without one only SQLite runs. Prints changes/s for: journal writes (journal.record, 5,000 a
transaction), the sequencer (journal.sequence, a batch of 5,000 a transaction), the store's read and the
API's read."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from calsync.emulators.server import serve_in_thread  # noqa: E402
from calsync.engine import local  # noqa: E402
from calsync.engine.journal_upkeep import sequence_pending  # noqa: E402
from calsync.service.app import create_app  # noqa: E402
from calsync.store import accounts as account_store  # noqa: E402
from calsync.store import journal, users  # noqa: E402
from calsync.store.db import normalise_url, open_engine  # noqa: E402

EVENTS = 200
WRITE_BATCH = 5000


@contextmanager
def pg_database(server_url: str) -> Iterator[str]:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    url = make_url(normalise_url(server_url))
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"calsync_bench_feed_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def fill(engine: Engine, count: int) -> tuple[str, str, float]:
    """A user with a read key and `count` journal rows (EVENTS created through the engine, the rest
    updates of them written by journal.record). Returns the user, the key and the write rate."""
    with engine.begin() as conn:
        user_id = users.create_user(conn, "reader")
        key = users.create_api_key(conn, user_id, "read", "bench")[1]
        calendar_id = account_store.create_calendar(conn, "Bench", user_id=user_id)
    slot = {"start": "2026-12-08T09:00:00Z", "end": "2026-12-08T09:30:00Z"}
    ids = [local.create_event(engine, calendar_id, {"title": f"e{n}", **slot}).event_id for n in range(EVENTS)]
    versions = dict.fromkeys(ids, 1)
    author = journal.Author("local", "bench")
    left = count - EVENTS
    started = time.perf_counter()
    n = 0
    while left > 0:
        batch = []
        for _ in range(min(WRITE_BATCH, left)):
            event_id = ids[n % EVENTS]
            versions[event_id] += 1
            title = f"title {n}"
            batch.append(
                journal.Change(
                    event_id, calendar_id, versions[event_id], "updated", ["title"], {"title": ["before", title]}
                )
            )
            n += 1
        with engine.begin() as conn:
            journal.record(conn, batch, author)
        left -= len(batch)
    return user_id, key, n / (time.perf_counter() - started)


def run(label: str, url: str, count: int, limit: int) -> None:
    engine = open_engine(url)
    try:
        user_id, key, write_rate = fill(engine, count)
        started = time.perf_counter()
        sequenced = sequence_pending(engine)
        sequence_rate = sequenced / (time.perf_counter() - started)
        assert sequenced == count, (sequenced, count)

        started = time.perf_counter()
        after: int | None = None
        read = pages = 0
        while True:
            with engine.begin() as conn:
                page = journal.read_feed(conn, user_id, after, limit, diffs=False)
            read, pages, after = read + len(page.items), pages + 1, page.next_position
            if not page.more:
                break
        store_rate = read / (time.perf_counter() - started)
        assert read == count, (read, count)

        app = create_app(engine)
        server = serve_in_thread(app)
        try:
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
                started = time.perf_counter()
                cursor: str | None = None
                read = 0
                while True:
                    params: dict[str, str | int] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
                    body = http.get("/api/v1/changes", params=params).raise_for_status().json()
                    read, cursor = read + len(body["changes"]), body["cursor"]
                    if not body["more"]:
                        break
                api_rate = read / (time.perf_counter() - started)
                assert read == count, (read, count)
        finally:
            app.state.feed.close()
            server.stop()
        print(
            f"{label:<11} {count:>8,} changes  journal writes {write_rate:>9,.0f}/s  "
            f"sequencer {sequence_rate:>9,.0f}/s  read (store) {store_rate:>9,.0f}/s  "
            f"read (API, limit {limit}) {api_rate:>8,.0f}/s  ({pages} pages)",
            flush=True,
        )
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--pg", default=os.environ.get("CALSYNC_TEST_PG_URL", ""))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run("SQLite", f"sqlite:///{Path(folder) / 'feed.db'}", args.changes, args.limit)
    if args.pg:
        with pg_database(args.pg) as url:
            run("PostgreSQL", url, args.changes, args.limit)
    else:
        print("PostgreSQL: skipped (no --pg and no CALSYNC_TEST_PG_URL)")


if __name__ == "__main__":
    main()
