"""Quiet polls given back in batches (Dispatcher.release_quiet, scheduling.release_quiet), on SQLite
and PostgreSQL: until the batch is written the binding stays leased; a notification that came
meanwhile leaves it dirty and due again shortly; a binding whose lease was lost meanwhile is not
written; a worker that dies before writing its batch loses nothing (the lease runs out, the next
worker polls again from the old token and finds what changed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, update

from calsync.engine.scheduler import Dispatcher, WorkerSettings
from calsync.model import utcnow
from calsync.store import accounts as account_store
from calsync.store import db, scheduling
from calsync.store.schema import bindings, events
from tests.remotes import GoogleRemote, open_remote


@pytest.fixture()
def store(db_url: str) -> Iterator[Engine]:
    engine = db.open_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def google(request: pytest.FixtureRequest) -> GoogleRemote:
    remote = open_remote("google", request)
    assert isinstance(remote, GoogleRemote)
    return remote


def _dispatcher(engine: Engine, google: GoogleRemote) -> Dispatcher:
    return Dispatcher(
        engine,
        settings=WorkerSettings(poll_interval=3600, concurrency=2, debounce=0.2),
        make_provider=google.make_provider(),
    )


def _first_sync(engine: Engine, dispatcher: Dispatcher) -> None:
    claims, details, known = dispatcher.worker.claim(utcnow(), 8)
    for claim in claims:
        dispatcher._sync((claim, details[claim["id"]], known.get(claim["account_id"])))
    dispatcher.release_quiet()
    with engine.begin() as conn:  # due again: the next claim is a quiet poll
        conn.execute(update(bindings).values(next_poll_at=utcnow() - timedelta(seconds=1)))


def _quiet_poll(dispatcher: Dispatcher, binding: str) -> None:
    """Claim and poll, without giving back (as between a sync's end and the next dispatch_once)."""
    claims, details, known = dispatcher.worker.claim(utcnow(), 8)
    assert [c["id"] for c in claims] == [binding]
    dispatcher._sync((claims[0], details[binding], known.get(claims[0]["account_id"])))


def _row(engine: Engine, binding: str) -> dict[str, object]:
    with engine.begin() as conn:
        return dict(account_store.get_binding(conn, binding))


def test_a_quiet_poll_is_given_back_with_its_token_by_the_next_batch(store: Engine, google: GoogleRemote) -> None:
    google.seed(3)
    binding = google.bind(store)
    dispatcher = _dispatcher(store, google)
    seen: list[str] = []
    dispatcher.worker.on_sync = lambda result, _dirty, _at: seen.append(result.status)
    try:
        _first_sync(store, dispatcher)
        before = _row(store, binding)
        _quiet_poll(dispatcher, binding)
        held = _row(store, binding)
        assert held["lease_owner"] == dispatcher.owner  # not given back yet, nothing written
        assert held["last_sync_at"] == before["last_sync_at"] and len(seen) == 1
        dispatcher.release_quiet()
    finally:
        dispatcher.close()
    after = _row(store, binding)
    assert after["lease_owner"] is None and after["lease_until"] is None and after["dirty_at"] is None
    assert after["last_sync_status"] == "ok" and after["sync_token"]
    assert after["last_sync_at"] > before["last_sync_at"]  # type: ignore[operator]
    assert after["next_poll_at"] > utcnow() + timedelta(seconds=3000)  # type: ignore[operator]
    assert after["last_sync_stats"] == {
        "pages": 1,
        "requests": 1,
        "created": 0,
        "updated": 0,
        "deleted": 0,
        "unchanged": 0,
        "conflicts": 0,
        "unknown_deletions": 0,
    }
    assert seen == ["ok", "ok"]  # on_sync told once the batch was written


def test_a_notification_before_the_batch_is_written_keeps_the_binding_dirty(
    store: Engine, google: GoogleRemote
) -> None:
    google.seed(3)
    binding = google.bind(store)
    dispatcher = _dispatcher(store, google)
    try:
        _first_sync(store, dispatcher)
        _quiet_poll(dispatcher, binding)
        with store.begin() as conn:  # after its listing, before the batch: the poll did not see it
            scheduling.mark_dirty(conn, binding, debounce=0.2)
        dispatcher.release_quiet()
    finally:
        dispatcher.close()
    after = _row(store, binding)
    assert after["lease_owner"] is None and after["dirty_at"] is not None
    assert after["next_poll_at"] < utcnow() + timedelta(seconds=5)  # type: ignore[operator]


def test_a_binding_whose_lease_was_lost_meanwhile_is_not_written(store: Engine, google: GoogleRemote) -> None:
    google.seed(3)
    binding = google.bind(store)
    dispatcher = _dispatcher(store, google)
    try:
        _first_sync(store, dispatcher)
        before = _row(store, binding)
        _quiet_poll(dispatcher, binding)
        with store.begin() as conn:  # its lease ran out and another worker claimed it
            conn.execute(update(bindings).values(lease_owner="someone else"))
        dispatcher.release_quiet()
    finally:
        dispatcher.close()
    after = _row(store, binding)
    assert after["lease_owner"] == "someone else"
    assert after["last_sync_at"] == before["last_sync_at"] and after["sync_token"] == before["sync_token"]


def test_a_worker_that_dies_before_its_batch_loses_nothing(store: Engine, google: GoogleRemote) -> None:
    google.seed(3)
    binding = google.bind(store)
    dying = _dispatcher(store, google)
    try:
        _first_sync(store, dying)
        _quiet_poll(dying, binding)
        google.insert("after the poll")  # changed after the quiet poll's listing
        with dying._quiet_lock:  # the process dies: its batch is never written
            dying._quiet.clear()
    finally:
        dying.close()
    with store.begin() as conn:
        assert conn.execute(select(bindings.c.lease_owner)).scalar_one() == dying.owner
        conn.execute(update(bindings).values(lease_until=utcnow() - timedelta(seconds=1)))  # its lease runs out
    survivor = _dispatcher(store, google)
    try:
        _quiet_poll(survivor, binding)  # due still (never given back): polled from the old token
        survivor.release_quiet()
    finally:
        survivor.close()
    with store.begin() as conn:
        titles = set(conn.execute(select(events.c.title)).scalars())
    assert "after the poll" in titles
    after = _row(store, binding)
    assert after["lease_owner"] is None and after["last_sync_status"] == "ok"
