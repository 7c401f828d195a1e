"""What per-event history costs in storage: the change journal's size per 10,000 edits.

    python bench/history.py                       # SQLite (a temporary file)
    python bench/history.py --pg postgresql://postgres@127.0.0.1:5432/postgres   # and PostgreSQL
    python bench/history.py --events 500 --edits 10000 --seed 1

Makes `--events` local events (a title, a location, a description, three attendees), then `--edits`
local edits through engine.local.update_event (what the REST API does), chosen at random: a new title
(40%), a move of the time (35%: start and end together), an attendee added or removed (25%). Prints the
journal's size (table and indexes) grown by the edits alone (the creations are measured first and taken
off), per edit and per 10,000 edits: on SQLite from dbstat (the pages the table and its indexes hold;
the file's growth too), on PostgreSQL from pg_total_relation_size('event_changes') (table, TOAST,
indexes). It also prints what the same history would cost as snapshots (the event's history fields as
JSON, once per version) beside the diffs the journal keeps, to show why it keeps diffs."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sqlalchemy import Engine, func, select, text

from calsync.engine import local
from calsync.engine.setup import add_calendar
from calsync.store import journal
from calsync.store.db import normalise_url, open_engine
from calsync.store.schema import event_changes, events

AUTHOR = journal.Author("local", "api key bench")
DAY = datetime(2027, 1, 4, 9, tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def journal_bytes(engine: Engine) -> int:
    """The journal's table and its indexes, as the database holds them."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            names = [event_changes.name, *(index.name for index in event_changes.indexes)]
            marks = ", ".join(f"'{name}'" for name in names if name)
            query = f"SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN ({marks}) OR name LIKE 'sqlite_autoindex_event_changes%'"
            return int(conn.execute(text(query)).scalar_one())
        conn.execute(text("ANALYZE event_changes"))
        return int(conn.execute(text("SELECT pg_total_relation_size('event_changes')")).scalar_one())


def file_bytes(url: str) -> int:
    return os.path.getsize(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else 0


def run(url: str, n_events: int, n_edits: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    engine = open_engine(url)
    calendar = add_calendar(engine, "Bench")
    made: list[tuple[str, datetime, list[str]]] = []
    for n in range(n_events):
        start = DAY + timedelta(days=n % 90, hours=n % 8)
        people = [f"person{n}-{k}@example.com" for k in range(3)]
        fields = {
            "title": f"Meeting {n} about the quarterly plan",
            "start": _iso(start),
            "end": _iso(start + timedelta(hours=1)),
            "location": f"Room {n % 40}",
            "description": "Agenda: status, risks, next steps. " * 4,
            "attendees": people,
        }
        made.append((local.create_event(engine, calendar, fields, author=AUTHOR).event_id, start, people))
    before, file_before = journal_bytes(engine), file_bytes(url)
    started = time.perf_counter()
    kinds = {"title": 0, "time": 0, "attendees": 0}
    for n in range(n_edits):
        slot = rng.randrange(len(made))
        event_id, start, people = made[slot]
        roll = rng.random()
        if roll < 0.40:
            changes: dict[str, Any] = {"title": f"Meeting {slot} about the quarterly plan (rev {n})"}
            kinds["title"] += 1
        elif roll < 0.75:
            start = start + timedelta(minutes=rng.choice((-90, -30, 30, 60, 120)))
            changes = {"start": _iso(start), "end": _iso(start + timedelta(hours=1))}
            kinds["time"] += 1
        else:
            if len(people) > 1 and rng.random() < 0.5:
                people = people[:-1]
            else:
                people = [*people, f"guest{n}@example.com"]
            changes = {"attendees": people}
            kinds["attendees"] += 1
        made[slot] = (event_id, start, people)
        local.update_event(engine, event_id, changes, None, author=AUTHOR)
    elapsed = time.perf_counter() - started
    after, file_after = journal_bytes(engine), file_bytes(url)
    with engine.begin() as conn:
        diffs = list(conn.execute(select(event_changes.c.diff).where(event_changes.c.kind == "updated")).scalars())
        rows = conn.execute(select(func.count()).select_from(event_changes)).scalar_one()
        sample = [dict(r) for r in conn.execute(select(*[events.c[f] for f in journal.HISTORY_FIELDS])).mappings()]
    diff_json = sum(len(json.dumps(d, separators=(",", ":"))) for d in diffs) / max(1, len(diffs))
    snapshot_json = sum(len(json.dumps(s, separators=(",", ":"))) for s in sample) / max(1, len(sample))
    engine.dispose()
    grown = after - before
    return {
        "backend": engine.dialect.name,
        "events": n_events,
        "edits": n_edits,
        "mix": kinds,
        "journal_rows": rows,
        "journal_bytes_for_edits": grown,
        "bytes_per_edit": grown / n_edits,
        "bytes_per_10000_edits": grown * 10000 / n_edits,
        "sqlite_file_growth": (file_after - file_before) if url.startswith("sqlite") else None,
        "diff_json_bytes_per_edit": round(diff_json, 1),
        "snapshot_json_bytes_per_version": round(snapshot_json, 1),
        "edits_per_second": round(n_edits / elapsed, 1),
    }


def pg_database(server_url: str) -> tuple[str, Any]:
    """A fresh database on the server (dropped by the returned function)."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = f"calsync_bench_{uuid.uuid4().hex[:10]}"
    admin = make_url(normalise_url(server_url)).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    url = make_url(normalise_url(server_url)).set(database=name).render_as_string(hide_password=False)
    return url, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--edits", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg", help="a PostgreSQL server URL to measure on too (a database is made and dropped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = [run(f"sqlite:///{Path(folder) / 'bench.db'}", args.events, args.edits, args.seed)]
    if args.pg:
        url, drop = pg_database(args.pg)
        try:
            results.append(run(url, args.events, args.edits, args.seed))
        finally:
            drop()
    for result in results:
        print(json.dumps(result))
    for result in results:
        print(
            f"{result['backend']}: {result['bytes_per_10000_edits'] / 1e6:.2f} MB of journal per 10,000 edits "
            f"({result['bytes_per_edit']:.0f} bytes an edit; the diff itself {result['diff_json_bytes_per_edit']:.0f} "
            f"bytes of JSON, where a snapshot of the event would be {result['snapshot_json_bytes_per_version']:.0f})"
        )


if __name__ == "__main__":
    main()
