"""The change journal (store/journal.py) on SQLite and PostgreSQL: what each kind of change records,
the sequencer's commit order, retention, and rebuilding an old version from the diffs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from calsync.engine import local
from calsync.engine.setup import add_calendar
from calsync.model import utcnow
from calsync.store import journal
from calsync.store.db import open_engine
from calsync.store.users import default_owner

EVENT = {"title": "Standup", "start": "2026-12-08T09:00:00Z", "end": "2026-12-08T09:15:00Z"}


@pytest.fixture()
def store(db_url: str) -> Engine:
    return open_engine(db_url)


def _feed(engine: Engine, after: int | None = None, limit: int = 100) -> journal.FeedPage:
    with engine.begin() as conn:
        journal.sequence(conn)
    with engine.begin() as conn:
        return journal.read_feed(conn, default_owner(conn), after, limit)


def test_each_local_change_is_one_row_with_its_version_author_and_diff(store: Engine) -> None:
    calendar = add_calendar(store, "Work")
    someone = journal.Author("local", "api key deploy-bot")
    made = local.create_event(store, calendar, EVENT, author=someone)
    local.update_event(store, made.event_id, {"title": "Daily standup"}, None, author=someone)
    local.delete_event(store, made.event_id, None, author=journal.Author("local", "cli"))

    items = _feed(store).items
    assert [(i["kind"], i["version"], i["author"]) for i in items] == [
        ("created", 1, "api key deploy-bot"),
        ("updated", 2, "api key deploy-bot"),
        ("deleted", 3, "cli"),
    ]
    assert items[1]["fields"] == ["title"]
    assert items[1]["diff"] == {"title": ["Standup", "Daily standup"]}
    assert {i["side"] for i in items} == {"local"}
    assert [i["position"] for i in items] == sorted(i["position"] for i in items)


def test_the_feed_goes_on_from_its_cursor_and_never_repeats(store: Engine) -> None:
    calendar = add_calendar(store, "Work")
    ids = [local.create_event(store, calendar, {**EVENT, "title": f"e{n}"}).event_id for n in range(5)]
    first = _feed(store, None, 3)
    assert first.more and len(first.items) == 3
    rest = _feed(store, first.next_position, 3)
    assert not rest.more
    assert [i["event_id"] for i in first.items + rest.items] == ids
    local.update_event(store, ids[0], {"title": "again"}, None)
    after = _feed(store, rest.next_position)
    assert [(i["event_id"], i["version"]) for i in after.items] == [(ids[0], 2)]
    assert _feed(store, after.next_position).items == []


def test_unsequenced_rows_are_not_read_until_the_sequencer_numbers_them(store: Engine) -> None:
    calendar = add_calendar(store, "Work")
    local.create_event(store, calendar, EVENT)
    with store.begin() as conn:
        assert journal.read_feed(conn, default_owner(conn), None, 10).items == []
        assert journal.head(conn) == 0
    assert len(_feed(store).items) == 1


def test_a_cursor_older_than_retention_is_refused(store: Engine) -> None:
    calendar = add_calendar(store, "Work")
    event = local.create_event(store, calendar, EVENT).event_id
    start = _feed(store).next_position
    local.update_event(store, event, {"title": "x"}, None)
    _feed(store)
    with store.begin() as conn:
        assert journal.prune(conn, utcnow() + timedelta(seconds=1)) == 2
    with pytest.raises(journal.CursorExpired):
        _feed(store, start - 1)
    assert _feed(store, None).items == []  # no cursor: from the oldest kept


def test_an_old_version_is_rebuilt_from_the_diffs(store: Engine) -> None:
    calendar = add_calendar(store, "Work")
    event = local.create_event(store, calendar, {**EVENT, "location": "Room 1"}).event_id
    local.update_event(store, event, {"title": "Moved", "start": "2026-12-08T10:00:00Z", "end": "2026-12-08T10:15:00Z"}, None)
    local.update_event(store, event, {"location": "Room 2"}, None)
    with store.begin() as conn:
        v1 = journal.content_at(conn, event, 1)
        v2 = journal.content_at(conn, event, 2)
        assert journal.content_at(conn, event, 9) is None
    assert v1 is not None and v2 is not None
    assert (v1["title"], v1["location"], v1["start"]) == ("Standup", "Room 1", "2026-12-08T09:00:00Z")
    assert (v2["title"], v2["location"], v2["start"]) == ("Moved", "Room 1", "2026-12-08T10:00:00Z")


def test_the_author_of_each_kind_of_source() -> None:
    assert journal.author_of_source("local") == journal.LIBRARY
    assert journal.author_of_source("google:b1") == journal.Author("b1", "google binding b1")
    assert journal.author_of_source("merge:graph:b2") == journal.Author("b2", "merge of local and graph binding b2")
