"""The change feed (`GET /api/v1/changes`, service/feed_routes.py over store/journal.py), on SQLite and
PostgreSQL: pages in commit order behind an opaque cursor, each change once; 400 for a cursor the
feed never gave, 410 (with the way to resnapshot) for one older than retention; another user's changes
never shown; long polls woken within 100 ms of a commit made by another process; a reader following
the feed while two worker processes and the API write concurrently on PostgreSQL; two transactions
committing in the opposite order of their journal ids; retention by the service and by the CLI."""

from __future__ import annotations

import base64
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from typer.testing import CliRunner

import calsync
from calsync.config import ConfigError, journal_days
from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.engine import local
from calsync.model import utcnow
from calsync.service.app import create_app
from calsync.service.feed_routes import Feed, JournalUpkeep, decode_cursor, encode_cursor
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.store import journal, users
from calsync.store.db import open_engine
from calsync.store.schema import event_changes, events

SLOT = {"start": "2026-12-08T09:00:00Z", "end": "2026-12-08T09:30:00Z"}
SRC = str(Path(calsync.__file__).resolve().parents[1])


@dataclass
class Person:
    user_id: str
    calendar_id: str
    read: dict[str, str]  # headers with a read-scoped key
    write: dict[str, str]


def _person(engine: Engine, name: str) -> Person:
    with engine.begin() as conn:
        user_id = users.create_user(conn, name)
        read_key = users.create_api_key(conn, user_id, "read", "feed reader")[1]
        write_key = users.create_api_key(conn, user_id, "write", "app")[1]
        calendar_id = account_store.create_calendar(conn, f"{name}'s", user_id=user_id)
    return Person(
        user_id, calendar_id, {"Authorization": f"Bearer {read_key}"}, {"Authorization": f"Bearer {write_key}"}
    )


@pytest.fixture()
def store(db_url: str) -> Iterator[Engine]:
    engine = open_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def client(store: Engine) -> Iterator[TestClient]:
    app = create_app(store)
    with TestClient(app) as test_client:
        yield test_client
    app.state.feed.close()


def _event(engine: Engine, person: Person, title: str = "Standup") -> str:
    return local.create_event(engine, person.calendar_id, {"title": title, **SLOT}).event_id


def _follow(
    client: TestClient | httpx.Client, headers: dict[str, str], cursor: str | None = None, **params: Any
) -> Any:
    query = {**({"cursor": cursor} if cursor else {}), **params}
    response = client.get("/api/v1/changes", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _drain(
    client: TestClient, headers: dict[str, str], cursor: str | None = None, limit: int = 100
) -> tuple[list[Any], str]:
    seen: list[Any] = []
    while True:
        page = _follow(client, headers, cursor, limit=limit)
        seen += page["changes"]
        cursor = page["cursor"]
        if not page["more"]:
            return seen, cursor


# --- reading ---------------------------------------------------------------------------------------


def test_the_feed_pages_the_callers_changes_in_commit_order(store: Engine, client: TestClient) -> None:
    ada = _person(store, "ada")
    first = _event(store, ada)
    second = _event(store, ada, "Review")
    local.update_event(store, first, {"title": "Daily standup", "location": "Room 1"}, None)
    local.delete_event(store, second, None)

    page = _follow(client, ada.read, limit=2)  # a read-scoped key is all it takes
    assert page["more"] is True and len(page["changes"]) == 2
    rest = _follow(client, ada.read, page["cursor"], limit=2)
    assert rest["more"] is True
    tail = _follow(client, ada.read, rest["cursor"], limit=2)
    assert tail == {"changes": [], "cursor": tail["cursor"], "more": False}
    changes = page["changes"] + rest["changes"]
    assert [(c["event_id"], c["version"], c["kind"]) for c in changes] == [
        (first, 1, "created"),
        (second, 1, "created"),
        (first, 2, "updated"),
        (second, 2, "deleted"),
    ]
    update_ = changes[2]
    assert sorted(update_["fields"]) == ["location", "title"]
    assert update_["side"] == "local" and update_["author"] and update_["calendar_id"] == ada.calendar_id
    assert update_["at"].endswith("Z") and update_["conflict_id"] is None
    assert "diff" not in update_ and "position" not in update_  # diffs are the history's; positions are the cursor's

    # a cursor goes on from where it was, also from an empty page; nothing is repeated
    local.update_event(store, first, {"title": "again"}, None)
    later = _follow(client, ada.read, tail["cursor"])
    assert [(c["event_id"], c["version"]) for c in later["changes"]] == [(first, 3)]
    assert _follow(client, ada.read, later["cursor"])["changes"] == []
    # no cursor: from the oldest change kept
    assert len(_follow(client, ada.read)["changes"]) == 5


def test_another_users_changes_never_appear_and_an_admin_reads_for_the_user_it_names(
    store: Engine, client: TestClient
) -> None:
    ada, bob = _person(store, "ada"), _person(store, "bob")
    mine = _event(store, ada)
    theirs = [_event(store, bob, f"bob {n}") for n in range(3)]
    local.update_event(store, theirs[0], {"title": "bob's secret"}, None)
    seen, _ = _drain(client, ada.read, limit=1)
    assert [c["event_id"] for c in seen] == [mine]
    assert {c["event_id"] for c in _drain(client, bob.read)[0]} == set(theirs)
    with store.begin() as conn:
        admin_key = users.create_api_key(conn, users.create_user(conn, "ops", is_admin=True), "admin")[1]
    admin = {"Authorization": f"Bearer {admin_key}"}
    assert _follow(client, admin)["changes"] == []  # the admin's own user owns nothing
    as_ada = _follow(client, {**admin, "X-Calsync-User": "ada"})
    assert [c["event_id"] for c in as_ada["changes"]] == [mine]
    # bob's key naming ada is refused; without a key there is no feed at all
    assert client.get("/api/v1/changes", headers={**bob.read, "X-Calsync-User": "ada"}).status_code == 403
    assert client.get("/api/v1/changes").status_code == 401
    assert client.get("/api/v1/changes/head").status_code == 401


@pytest.mark.parametrize(
    "cursor",
    [
        "nonsense!",
        "",
        base64.urlsafe_b64encode(b"feed:v2:5").decode(),
        base64.urlsafe_b64encode(b"feed:v1:-1").decode(),
        base64.urlsafe_b64encode(b"feed:v1:007").decode(),
        base64.urlsafe_b64encode(b"feed:v1:99999999999999999999").decode(),
        base64.urlsafe_b64encode("feed:v1:\u0661".encode()).decode(),
        base64.urlsafe_b64encode(b'["2026-12-01T09:00:00Z","' + b"0" * 32 + b'"]').decode(),  # an /events cursor
    ],
)
def test_a_cursor_the_feed_never_gave_is_a_400_saying_so(store: Engine, client: TestClient, cursor: str) -> None:
    ada = _person(store, "ada")
    response = client.get("/api/v1/changes", params={"cursor": cursor}, headers=ada.read)
    assert response.status_code == 400, response.text
    assert "cursor" in response.json()["detail"]


def test_cursors_round_trip_and_are_opaque() -> None:
    for position in (0, 1, 12345, 2**62):
        cursor = encode_cursor(position)
        assert decode_cursor(cursor) == position and str(position) not in cursor and "=" not in cursor


def test_a_cursor_older_than_retention_is_a_410_with_the_way_to_resnapshot(store: Engine, client: TestClient) -> None:
    ada = _person(store, "ada")
    event = _event(store, ada)
    old_cursor = _follow(client, ada.read)["cursor"]
    local.update_event(store, event, {"title": "v2"}, None)
    _follow(client, ada.read, old_cursor)  # sequenced
    with store.begin() as conn:
        assert journal.prune(conn, utcnow() + timedelta(seconds=1)) == 2
    gone = client.get("/api/v1/changes", params={"cursor": encode_cursor(0)}, headers=ada.read)
    assert gone.status_code == 410, gone.text
    body = gone.json()
    assert body["head_url"] == "/api/v1/changes/head" and body["snapshot_url"] == "/api/v1/events"
    assert "retention" in body["detail"] and "/api/v1/changes/head" in body["detail"]
    # the resnapshot: head, then the events, then the feed from that head misses nothing made after it
    head = client.get("/api/v1/changes/head", headers=ada.read)
    assert head.status_code == 200
    listed = client.get("/api/v1/events", headers=ada.read).json()["events"]
    assert [(e["id"], e["version"]) for e in listed] == [(event, 2)]
    local.update_event(store, event, {"title": "v3"}, None)
    after = _follow(client, ada.read, head.json()["cursor"])
    assert [(c["event_id"], c["version"]) for c in after["changes"]] == [(event, 3)]
    # a cursor ahead of the feed (a database put back from a backup) is told to resnapshot too
    ahead = client.get("/api/v1/changes", params={"cursor": encode_cursor(10**6)}, headers=ada.read)
    assert ahead.status_code == 410 and "ahead" in ahead.json()["detail"]


def test_a_conflict_opened_and_resolved_is_in_the_feed_with_its_id_and_the_binding_side(
    tmp_path: Path, google_url: str
) -> None:
    from calsync.engine import setup
    from calsync.engine.sync import sync_once
    from tests.helpers import GoogleApi, local_events, migrated_sqlite

    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    with engine.begin() as conn:
        user_id = users.create_user(conn, "alice")
        headers = {"Authorization": f"Bearer {users.create_api_key(conn, user_id, 'write')[1]}"}
    google = GoogleApi(google_url, "alice")
    remote_calendar = google.primary_id()
    remote = google.insert(remote_calendar, "Planning")["id"]
    account = setup.add_account(engine, "google", "alice", google_url, {"token": "alice"}, owner=user_id)
    bound = setup.bind_calendar(engine, account, remote_calendar, setup.NewCalendar("alice"), owner=user_id)
    sync_once(engine)
    event_id = local_events(engine, bound.binding_id)[remote]["id"]
    local.update_event(engine, event_id, {"title": "Planning (here)"}, None)
    google.patch(remote_calendar, remote, summary="Planning (there)")
    sync_once(engine)
    with TestClient(create_app(engine)) as client:
        (conflict,) = client.get("/api/v1/conflicts", headers=headers).json()["conflicts"]
        client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", json={"keep": "local"}, headers=headers)
        seen, _ = _drain(client, headers)
    kinds = [(c["kind"], c["side"], c["conflict_id"]) for c in seen]
    assert kinds[0] == ("created", bound.binding_id, None)  # brought by the binding
    assert ("conflict-opened", bound.binding_id, conflict["id"]) in kinds
    assert [k for k, _, cid in kinds if cid == conflict["id"]] == ["conflict-opened", "conflict-resolved"]
    engine.dispose()


# --- long polls --------------------------------------------------------------------------------------


@pytest.fixture()
def served(store: Engine) -> Iterator[tuple[RunningServer, Feed]]:
    app = create_app(store)
    server = serve_in_thread(app)
    yield server, app.state.feed
    app.state.feed.close()
    server.stop()


# A committer in another process: for each line on stdin it updates the event, then prints the
# monotonic clock (one clock for every process of the machine) right after the commit returned.
COMMITTER = """
import sys, time
from calsync.engine import local
from calsync.store.db import open_engine
engine = open_engine(sys.argv[1])
event_id = sys.argv[2]
print("ready", flush=True)
for n, _line in enumerate(sys.stdin):
    local.update_event(engine, event_id, {"title": f"edit {n}"}, None)
    print(time.monotonic(), flush=True)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", code, *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until(condition: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_a_long_poll_wakes_within_100_ms_of_a_commit_in_another_process(
    store: Engine, db_url: str, served: tuple[RunningServer, Feed]
) -> None:
    server, feed = served
    ada = _person(store, "ada")
    event = _event(store, ada)
    committer = _python(COMMITTER, db_url, event)
    try:
        assert committer.stdout is not None and committer.stdin is not None
        assert committer.stdout.readline().strip() == "ready", committer.stderr.read() if committer.stderr else ""
        latencies: list[float] = []
        with httpx.Client(base_url=server.url, headers=ada.read, timeout=30) as http:
            cursor = _follow(http, ada.read)["cursor"]
            for _trial in range(7):
                answer: dict[str, Any] = {}

                def poll(cursor: str = cursor, answer: dict[str, Any] = answer) -> None:
                    response = http.get("/api/v1/changes", params={"cursor": cursor, "wait": 10})
                    answer["at"] = time.monotonic()
                    answer["response"] = response

                started = time.monotonic()
                thread = threading.Thread(target=poll)
                thread.start()
                _until(lambda: feed.watcher.waiting == 1)
                time.sleep(0.1)  # the request is parked: nothing new, no answer yet
                assert "at" not in answer
                committer.stdin.write("go\n")
                committer.stdin.flush()
                committed = float(committer.stdout.readline())
                thread.join(15)
                response = answer["response"]
                assert response.status_code == 200, response.text
                page = response.json()
                assert [c["event_id"] for c in page["changes"]] == [event]
                assert answer["at"] - started < 5, "answered by the timeout, not woken by the commit"
                latencies.append(answer["at"] - committed)
                cursor = page["cursor"]
    finally:
        committer.stdin.close() if committer.stdin else None
        committer.wait(10)
    shown = ", ".join(f"{1000 * s:.0f}" for s in latencies)
    print(f"commit -> long-poll answer (ms): {shown}")
    assert statistics.median(latencies) < 0.1, f"commit -> answer latencies (ms): {shown}"
    assert min(latencies) > 0, shown  # measured from the commit, not before it


def test_a_long_poll_waits_through_other_users_changes_and_answers_empty_at_its_end(
    store: Engine, served: tuple[RunningServer, Feed]
) -> None:
    server, feed = served
    ada, bob = _person(store, "ada"), _person(store, "bob")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        cursor = _follow(http, ada.read)["cursor"]
        started = time.monotonic()
        result: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: result.update(page=_follow(http, ada.read, cursor, wait=1.0), at=time.monotonic())
        )
        thread.start()
        _until(lambda: feed.watcher.waiting == 1)
        _event(store, bob)  # bob's change does not answer ada's poll
        thread.join(10)
        assert result["page"]["changes"] == [] and result["at"] - started >= 0.95
        # the answer's cursor already lies past bob's change: ada's next read finds nothing to skip
        assert _follow(http, ada.read, result["page"]["cursor"])["changes"] == []
        # and wait=0 answers at once
        started = time.monotonic()
        assert _follow(http, ada.read, cursor, wait=0)["changes"] == []
        assert time.monotonic() - started < 0.5
        # out of range is a 422 naming the parameter, never a silent clamp
        too_long = http.get("/api/v1/changes", params={"wait": 61}, headers=ada.read)
        assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["query", "wait"]
        assert http.get("/api/v1/changes", params={"limit": 1001}, headers=ada.read).status_code == 422
    _until(lambda: not feed.watcher.running, within=feed.watcher.linger + 5)  # nobody waits: the thread stops


# --- concurrency on PostgreSQL --------------------------------------------------------------------


# A worker process: creates, edits and deletes events of its own and edits the shared ones, as fast as
# it can for `seconds`, once told to start. Two of them run at once, with the API writing too.
WRITER = """
import random, sys, time
from calsync.engine import local
from calsync.store.db import open_engine
url, calendar_id, shared, seconds, seed = sys.argv[1:6]
engine = open_engine(url)
rng = random.Random(int(seed))
shared = shared.split(",")
mine = []
print("ready", flush=True)
sys.stdin.readline()
done = 0
end = time.monotonic() + float(seconds)
while time.monotonic() < end:
    roll = rng.random()
    try:
        if roll < 0.3 or not mine:
            slot = {"start": "2026-12-09T10:00:00Z", "end": "2026-12-09T11:00:00Z"}
            mine.append(local.create_event(engine, calendar_id, {"title": f"w{seed} {done}", **slot}).event_id)
        elif roll < 0.65:
            local.update_event(engine, rng.choice(shared), {"title": f"w{seed} {done}"}, None)
        elif roll < 0.95:
            local.update_event(engine, rng.choice(mine), {"location": f"room {done}"}, None)
        else:
            local.delete_event(engine, mine.pop(rng.randrange(len(mine))), None)
        done += 1
    except local.StaleVersion:
        pass  # another writer's edit of a shared event came first
print(done, flush=True)
"""


def test_a_reader_sees_every_change_once_in_each_events_order_while_workers_and_the_api_write(
    pg_url: str,
) -> None:
    engine = open_engine(pg_url)
    ada, bob = _person(engine, "ada"), _person(engine, "bob")
    shared = [_event(engine, ada, f"shared {n}") for n in range(4)]
    app = create_app(engine)
    server = serve_in_thread(app)
    writers = [_python(WRITER, pg_url, ada.calendar_id, ",".join(shared), "5", str(seed)) for seed in (1, 2)]
    stop = threading.Event()
    api_writes = {"ada": 0, "bob": 0}
    bob_events: set[str] = set()

    def api_writer() -> None:
        rng = random.Random(3)
        with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as http:
            while not stop.is_set():
                if rng.random() < 0.2:  # bob's changes interleave and must never reach ada's feed
                    made = http.post(
                        "/events", json={"calendar_id": bob.calendar_id, "title": "b", **SLOT}, headers=bob.write
                    )
                    bob_events.add(made.json()["id"])
                    api_writes["bob"] += 1
                elif rng.random() < 0.5:
                    http.post(
                        "/events", json={"calendar_id": ada.calendar_id, "title": "api", **SLOT}, headers=ada.write
                    )
                    api_writes["ada"] += 1
                else:
                    event = rng.choice(shared)
                    if (
                        http.patch(
                            f"/events/{event}", json={"title": "api edit"}, headers={**ada.write, "If-Match": "*"}
                        ).status_code
                        == 200
                    ):
                        api_writes["ada"] += 1

    seen: list[tuple[str, int]] = []
    pages = reads_while_writing = 0
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        threads = [threading.Thread(target=api_writer)]
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        threads[0].start()
        rng = random.Random(4)
        cursor: str | None = None
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while any(w.poll() is None for w in writers):
                page = _follow(http, ada.read, cursor, limit=rng.randint(1, 7), wait=0.2)
                seen += [(c["event_id"], c["version"]) for c in page["changes"]]
                cursor, pages = page["cursor"], pages + 1
                reads_while_writing += bool(page["changes"])
            stop.set()
            threads[0].join(30)
            while True:  # everything committed: read to the end
                page = _follow(http, ada.read, cursor, limit=rng.randint(1, 7))
                seen += [(c["event_id"], c["version"]) for c in page["changes"]]
                cursor = page["cursor"]
                if not page["changes"]:
                    break
        counts = [int(w.communicate(timeout=30)[0].strip().splitlines()[-1]) for w in writers]
    finally:
        stop.set()
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
        app.state.feed.close()
        server.stop()
    with engine.begin() as conn:
        journaled = [
            (row.event_id, row.version)
            for row in conn.execute(
                select(event_changes.c.event_id, event_changes.c.version).where(event_changes.c.user_id == ada.user_id)
            )
        ]
        final = dict(conn.execute(select(events.c.id, events.c.version)).all())
        ids = conn.execute(select(event_changes.c.id).order_by(event_changes.c.position)).scalars().all()
    # commits that landed against their id order (what a reader following ids would have lost)
    inversions = sum(1 for a, b in zip(ids, ids[1:], strict=False) if b < a)
    engine.dispose()
    print(
        f"writers {counts}, api {api_writes}, changes seen {len(seen)} in {pages} reads while writing; "
        f"{inversions} commits against id order"
    )
    assert all(counts) and api_writes["ada"] and api_writes["bob"], (counts, api_writes)
    assert reads_while_writing > 10, "the reader must follow the feed while the writers write"
    assert len(seen) == len(set(seen)), "a change was seen twice"
    assert sorted(seen) == sorted(journaled), "the feed and the journal differ"
    assert len(seen) >= sum(counts), (len(seen), counts)
    assert not {event for event, _ in seen} & bob_events
    by_event: dict[str, list[int]] = {}
    for event, version in seen:
        by_event.setdefault(event, []).append(version)
    for event, versions in by_event.items():
        assert versions == sorted(versions), f"{event}: versions out of order {versions}"
        assert versions == list(range(1, final[event] + 1)), f"{event}: {versions} but the event is at {final[event]}"


def test_postgresql_transactions_committing_against_their_journal_id_order_are_both_in_the_feed(
    pg_url: str,
) -> None:
    """Row ids are handed out at insert, not at commit: here the transaction with the lower id commits
    last. A reader going by ids would pass it; the sequencer gives it a position after the other."""
    engine = open_engine(pg_url)
    ada = _person(engine, "ada")
    first, second = _event(engine, ada, "first"), _event(engine, ada, "second")
    with TestClient(create_app(engine)) as client:
        cursor = _drain(client, ada.read)[1]

        def edit(conn: Any, event_id: str) -> int:
            row = event_store.get_events(conn, [event_id])[0]
            data = event_store.row_to_data(row)
            data.title += " (edited)"
            assert event_store.save_local_event(conn, event_id, data, row["version"] + 1)
            query = select(event_changes.c.id).where(event_changes.c.event_id == event_id, event_changes.c.version == 2)
            return int(conn.execute(query).scalar_one())

        with engine.connect() as low, engine.connect() as high:
            low.begin()
            low_id = edit(low, first)
            high.begin()
            high_id = edit(high, second)
            assert low_id < high_id
            high.commit()  # the higher id commits first
            page = _follow(client, ada.read, cursor)
            assert [(c["event_id"], c["version"]) for c in page["changes"]] == [(second, 2)]
            # a reader going by row ids would now stand at high_id, past low_id for good
            low.commit()
        later = _follow(client, ada.read, page["cursor"])
        assert [(c["event_id"], c["version"]) for c in later["changes"]] == [(first, 2)]
        assert _follow(client, ada.read, later["cursor"])["changes"] == []
        client.app.state.feed.close()  # type: ignore[attr-defined]
    engine.dispose()


# --- upkeep: sequencing without readers, retention ------------------------------------------------


def _backdate(engine: Engine, days: float) -> None:
    with engine.begin() as conn:
        conn.execute(update(event_changes).values(created_at=utcnow() - timedelta(days=days)))


def test_the_services_upkeep_sequences_without_readers_and_prunes_past_retention(store: Engine) -> None:
    ada = _person(store, "ada")
    old = _event(store, ada, "old")
    _backdate(store, 3)
    new = _event(store, ada, "new")
    upkeep = JournalUpkeep(store, days=2, sequence_every=0.05)
    upkeep.start()
    try:
        _until(lambda: upkeep.pruned == 1, within=10)
        with store.begin() as conn:
            assert journal.head(conn) == 2 and not journal.pending(conn)
            kept = journal.read_feed(conn, ada.user_id, None, 10).items
        assert [r["event_id"] for r in kept] == [new]  # the old event's creation is past retention
        local.update_event(store, old, {"title": "still here"}, None)  # sequenced, with no reader, at once

        def head() -> int:
            with store.connect() as conn:
                return journal.head(conn)

        _until(lambda: head() == 3, within=10)
    finally:
        upkeep.stop()


def test_journal_prune_on_the_command_line(store: Engine, db_url: str, tmp_path: Path) -> None:
    from calsync.cli import app

    ada = _person(store, "ada")
    _event(store, ada, "old")
    _backdate(store, 10)
    _event(store, ada, "new")
    runner = CliRunner()
    kept = runner.invoke(app, ["journal", "prune", "--db", db_url, "--days", "30"])
    assert kept.exit_code == 0, kept.output
    assert "pruned 0" in kept.output
    config = tmp_path / "calsync.toml"
    config.write_text("[journal]\ndays = 5\n")
    pruned = runner.invoke(app, ["journal", "prune", "--db", db_url, "--config", str(config), "--json"])
    assert pruned.exit_code == 0, pruned.output
    assert '"pruned": 1' in pruned.output
    with store.begin() as conn:
        assert len(journal.read_feed(conn, ada.user_id, None, 10).items) == 1
    config.write_text("[journal]\ndays = -1\n")
    refused = runner.invoke(app, ["journal", "prune", "--db", db_url, "--config", str(config)])
    assert refused.exit_code == 2 and "CALSYNC_JOURNAL_DAYS" in refused.output


def test_the_retention_setting() -> None:
    assert journal_days({}) == 90
    assert journal_days({"CALSYNC_JOURNAL_DAYS": "7.5"}) == 7.5
    for bad in ("0", "-3", "soon", "nan", "inf"):
        with pytest.raises(ConfigError, match="CALSYNC_JOURNAL_DAYS"):
            journal_days({"CALSYNC_JOURNAL_DAYS": bad})


def test_calsync_serve_sequences_without_readers_and_stops_at_once_with_a_long_poll_pending(tmp_path: Path) -> None:
    import signal
    import socket

    database = tmp_path / "calsync.db"
    engine = open_engine(f"sqlite:///{database}")
    ada = _person(engine, "ada")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    env["PYTHONPATH"] = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "calsync.cli", "serve", "--no-workers", "--port", str(port), "--db", str(database)]
    server = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _answers(base), within=30)
        _event(engine, ada)

        def head() -> int:
            with engine.connect() as conn:
                return journal.head(conn)

        _until(lambda: head() == 1, within=10)  # the service's upkeep numbered it: nobody read the feed
        with httpx.Client(base_url=base, headers=ada.read, timeout=30) as http:
            cursor = http.get("/api/v1/changes").json()["cursor"]
            answer: dict[str, Any] = {}
            poll = threading.Thread(
                target=lambda: answer.update(r=http.get("/api/v1/changes", params={"cursor": cursor, "wait": 30}))
            )
            poll.start()
            time.sleep(0.5)
            asked = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(20)
            stopped = time.monotonic() - asked
            poll.join(5)
        assert answer["r"].status_code == 200 and answer["r"].json()["changes"] == []
        assert stopped < 10, f"the service took {stopped:.1f} s to stop: the long poll held it"
    finally:
        if server.poll() is None:
            server.kill()
        engine.dispose()


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
