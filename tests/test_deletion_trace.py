"""Every deletion calsync propagates traces back to one someone made: a tombstone without its
proof is a bug upstream, and the outbox refuses to carry it to the remote side."""
from __future__ import annotations

import pytest
from sqlalchemy import Engine, update

from calsync.engine import local
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.store import outbox as queue
from calsync.store.schema import events, outbox
from tests.remotes import Remote
from tests.test_twoway import calendar_of, new_event, remote_id, sync


def test_a_tombstone_without_proof_is_never_deleted_remotely(engine: Engine, remote: Remote) -> None:
    binding = remote.bind(engine)
    event_id = new_event(engine, calendar_of(engine, binding))
    sync(engine, remote)
    rid = remote_id(engine, binding, event_id)
    with engine.begin() as conn:  # what a buggy code path would leave: deleted, no who, no proof
        conn.execute(update(events).where(events.c.id == event_id).values(deleted=True, version=2))
        queue.enqueue(conn, calendar_of(engine, binding), [(event_id, 2)])
    report = sync(engine, remote)
    assert report.outbound[0].failed == 1 and report.outbound[0].deleted == 0
    assert rid in remote.titles(), "the remote copy is untouched"
    with engine.begin() as conn:
        (row,) = conn.execute(outbox.select().where(outbox.c.event_id == event_id, outbox.c.version == 2)).mappings()
    assert row["status"] == "failed" and "without a recorded proof" in row["last_error"]


def test_the_store_refuses_a_deletion_without_proof(engine: Engine, remote: Remote) -> None:
    binding = remote.bind(engine)
    event_id = new_event(engine, calendar_of(engine, binding))
    with engine.begin() as conn, pytest.raises(ValueError, match="without a recorded proof"):
        event_store.tombstone_events(conn, {event_id: ""}, "local")
    local.delete_event(engine, event_id, if_version=1, via="a test")
    with engine.begin() as conn:
        (row,) = event_store.get_events(conn, [event_id])
    assert (row["deleted_by"], row["deletion_proof"]) == ("local", "deleted locally through a test")


def test_an_exdate_over_an_exception_deletes_it_with_the_side_that_holds_the_exdate(
        engine: Engine, google_url: str) -> None:
    """A side whose series now excludes an exception's occurrence (an EXDATE, the exception dropped
    with it) deleted that exception: it is tombstoned then, by that side, not later by the echo of
    calsync's own write to another side."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from calsync.engine.inbound import apply_remote_changes
    from calsync.providers import provider_for
    from tests.remotes import GoogleRemote

    google = GoogleRemote(google_url)
    binding = google.bind(engine)
    first = datetime(2026, 12, 7, 9, tzinfo=UTC)
    series_id = google.insert_series("Standup", first, 4)
    google.move_occurrence(series_id, first + timedelta(weeks=2), first + timedelta(weeks=2, hours=2), "Moved")
    sync(engine, google)
    with engine.begin() as conn:
        (exception,) = [e for e in event_store.list_events(conn) if e["original_start"]]
        account = account_store.get_account(conn, account_store.get_binding(conn, binding)["account_id"])
    provider = provider_for(account)
    series = provider.get_event(google.calendar, series_id)
    provider.close()
    assert series is not None and series.data.recurrence
    excluded = replace(series, etag=series.etag + "-2", data=replace(
        series.data, recurrence=[*series.data.recurrence, "EXDATE:20261221T090000Z"]))
    apply_remote_changes(engine, binding, [excluded])
    with engine.begin() as conn:
        (row,) = event_store.get_events(conn, [exception["id"]])
    assert row["deleted"] is True and row["deleted_by"] == f"google:{binding}"
    assert "EXDATE" in row["deletion_proof"] and "2026-12-21T09:00:00Z" in row["deletion_proof"]
