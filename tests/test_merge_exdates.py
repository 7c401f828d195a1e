"""Policy `merge` and a series' EXDATEs: a field-by-field merge that takes the recurrence (and so its
EXDATEs) from the local side does not tombstone the exceptions those EXDATEs exclude in the binding's
name (the binding never made them: chaos seed 1 with --policy merge found an exception tombstoned "by
an EXDATE in Graph's series" that only the hub's series held); a merge that takes the recurrence from
the binding's side does (commit 0913ae6, engine/page_store.write_page).

The hub's series comes to exclude a live exception's start through history: a version from before
the exception was made (its rule excluding that start) is restored. Making that version needs a
provider that keeps a deleted occurrence as an EXDATE and can bring it back: the CalDAV servers
(Google keeps a cancelled instance, Outlook cannot bring an occurrence back: the single-binding tests
skip them, saying so). The mirror test makes it in Radicale and has every provider merge it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from calsync.engine import local
from calsync.engine.history import restore
from calsync.engine.outbound import queue_calendar
from calsync.engine.sync import sync_once
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store.journal import LIBRARY
from tests.helpers import event_data, local_events
from tests.remotes import Remote, open_remote
from tests.test_twoway import calendar_of, remote_id, sync, version_of

FIRST = datetime(2026, 12, 7, 9, tzinfo=UTC)  # a Monday: four weekly occurrences
MOVED = FIRST + timedelta(weeks=2)  # the occurrence moved (an exception), later excluded
EXDATE = "EXDATE:20261221T090000Z"


def _row(engine: Engine, event_id: str) -> dict[str, Any]:
    with engine.begin() as conn:
        (row,) = event_store.get_events(conn, [event_id])
    return dict(row)


def _version_excluding(engine: Engine, remote: Remote) -> tuple[str, str, str, int]:
    """A remote series synced under policy merge, one occurrence (MOVED) deleted there and that
    taken: (binding, series remote id, local series id, the local version whose rule excludes
    MOVED). Skips a provider that keeps a deleted occurrence as a cancelled instance (Google)."""
    binding = remote.bind(engine, policy="merge")
    series_rid = remote.insert_series("Standup", FIRST, 4)
    sync(engine, remote)
    series = str(local_events(engine, binding)[series_rid]["id"])
    remote.delete_occurrence(series_rid, MOVED)
    sync(engine, remote)
    if EXDATE not in (event_data(engine, series).recurrence or []):
        pytest.skip(f"{remote.name} keeps a deleted occurrence as a cancelled instance, not an EXDATE")
    return binding, series_rid, series, version_of(engine, series)


def _live_exception_at_moved(engine: Engine, remote: Remote, binding: str, series_rid: str, series: str) -> str:
    """The series' first version restored here (MOVED is an occurrence again, there too), then that
    occurrence moved there: the live exception's local id."""
    restore(engine, series, 1, author=LIBRARY)
    sync(engine, remote)
    if remote.occurrence_state(series_rid, MOVED) != "live":
        pytest.skip(f"{remote.name} does not bring a deleted occurrence back (Outlook cannot)")
    remote.move_occurrence(series_rid, MOVED, MOVED + timedelta(hours=2), "Moved")
    sync(engine, remote)
    (exception,) = [r for r in local_events(engine, binding).values() if r["original_start"]]
    assert not exception["deleted"] and EXDATE not in (event_data(engine, series).recurrence or [])
    return str(exception["id"])


def test_a_merge_taking_the_local_recurrence_does_not_tombstone_an_exception_in_the_bindings_name(
    engine: Engine, remote: Remote
) -> None:
    """The hub's series comes to exclude the start of a live exception (a version from before the
    exception was made, restored from history); there, the series is renamed meanwhile. The sync
    merges (title from there, the rule and its EXDATE from here): the binding's series never
    excluded that start, so the binding deleted nothing."""
    binding, series_rid, series, excluding = _version_excluding(engine, remote)
    exception = _live_exception_at_moved(engine, remote, binding, series_rid, series)
    restore(engine, series, excluding, author=LIBRARY)  # here: the rule that excludes MOVED again
    remote.change(series_rid, title="Standup (renamed there)")
    sync(engine, remote)
    with engine.begin() as conn:
        assert [c for c in conflict_store.list_conflicts(conn) if c["event_id"] == series] == []
    merged = event_data(engine, series)
    assert merged.title == "Standup (renamed there)"  # the title from there ...
    assert EXDATE in (merged.recurrence or [])  # ... the rule, with its EXDATE, from here
    row = _row(engine, exception)
    # whatever becomes of the exception, it is not deleted in the binding's name by our EXDATE
    assert row["deleted_by"] != f"{remote.kind}:{binding}", row["deletion_proof"]


def test_a_merge_taking_the_remote_recurrence_tombstones_the_excluded_exception_in_the_bindings_name(
    engine: Engine, remote: Remote
) -> None:
    """The counterpart: there, the moved occurrence is deleted (its series excludes it: an EXDATE, or
    Outlook's deleted occurrence); here, meanwhile, the series is renamed. The merge takes the rule
    from there, and the exception goes in the binding's name."""
    binding, series_rid, series, _excluding = _version_excluding(engine, remote)
    exception = _live_exception_at_moved(engine, remote, binding, series_rid, series)
    remote.delete_occurrence(series_rid, MOVED)
    local.update_event(engine, series, {"title": "Standup (renamed here)"}, if_version=version_of(engine, series))
    sync(engine, remote)
    with engine.begin() as conn:
        assert [c for c in conflict_store.list_conflicts(conn) if c["event_id"] == series] == []
    merged = event_data(engine, series)
    assert merged.title == "Standup (renamed here)" and EXDATE in (merged.recurrence or [])
    row = _row(engine, exception)
    assert row["deleted"] is True
    assert row["deleted_by"] == f"{remote.kind}:{binding}", row["deletion_proof"]


def test_a_mirror_merging_the_hubs_rule_does_not_tombstone_an_exception_in_the_other_bindings_name(
    engine: Engine, remote: Remote, request: pytest.FixtureRequest
) -> None:
    """The chaos bench's case, with every provider as the merging side B: a series born in a CalDAV
    calendar A (which keeps a deleted occurrence as an EXDATE and can bring it back) is mirrored to B
    with its moved occurrence; the hub's series then excludes that occurrence's start again (an old
    version restored) while, in B, the series is renamed. B's sync merges (title from B, the rule from
    the hub): B's series never excluded the start, so the exception is not deleted in B's name."""
    source = open_remote("radicale", request)
    binding_a, series_rid, series, excluding = _version_excluding(engine, source)
    exception = _live_exception_at_moved(engine, source, binding_a, series_rid, series)
    makers = {source.kind: source.make_provider(), remote.kind: remote.make_provider()}  # each its own client

    def sync_both(engine: Engine, **kwargs: Any) -> None:
        sync_once(engine, make_provider=lambda account: makers[account.provider](account), **kwargs)

    calendar_b = remote.new_calendar("Mirror")
    binding_b = remote.bind(engine, calendar_b, policy="merge", local_calendar=calendar_of(engine, binding_a))
    queue_calendar(engine, binding_b)
    sync_both(engine)  # the series and its exception made in B
    series_in_b = remote_id(engine, binding_b, series)
    restore(engine, series, excluding, author=LIBRARY)  # the hub's rule excludes MOVED again
    remote.change(series_in_b, calendar_b, title="Standup (renamed in B)")
    sync_both(engine, binding_ids=[binding_b])  # B's page: the series merged
    with engine.begin() as conn:
        assert [c for c in conflict_store.list_conflicts(conn) if c["event_id"] == series] == []
    merged = event_data(engine, series)
    assert merged.title == "Standup (renamed in B)" and EXDATE in (merged.recurrence or [])
    row = _row(engine, exception)
    assert row["deleted_by"] != f"{remote.kind}:{binding_b}", row["deletion_proof"]
