"""What an inbound page costs stays bounded, and the quick paths store exactly what the plain ones did:
jsontext against json.dumps, the content hash against its definition, the bulk INSERT against
SQLAlchemy's own, the journal's creation rows against record(created()), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from calsync.engine.inbound import sync_binding
from calsync.engine.page_plan import (
    Adopt,
    BindingRef,
    CloseConflict,
    Create,
    Delete,
    Merge,
    OpenConflict,
    PagePlan,
    PageState,
    Relink,
    TakeRemote,
    UpdateLink,
    plan_page,
    unknown_claims,
)
from calsync.jsontext import canonical_dumps, dumps
from calsync.model import Attendee, EventData, RemoteEvent, _hashed_text_by_orjson
from calsync.providers.memory import MemoryProvider, MemoryService
from calsync.store import accounts as account_store
from calsync.store import journal
from calsync.store.common import insert_many, new_id
from calsync.store.db import open_engine
from calsync.store.schema import event_changes, event_links, events

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**70,
    1.5,
    1e300,
    float("nan"),
    float("inf"),
    "",
    "plain",
    'quo"te\\',
    "é ∑ 😀\n\t",
    [],
    {},
    [1, "a", None, [2, {"b": [3]}]],
    {"z": 1, "a": {"y": [True, None], "b": "x"}, "m": []},
    (1, "two"),
    {"attendees": [{"email": "a@example.org", "name": None, "optional": False}], "extra": {"google": {}}},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_jsontext_writes_json_dumps_text(value: Any) -> None:
    assert dumps(value) == json.dumps(value)
    assert canonical_dumps(value) == json.dumps(value, sort_keys=True, separators=(",", ":"))


def _data(n: int) -> EventData:
    return EventData(
        title=f"Meeting {n} é",
        start="2026-03-01T09:00:00Z",
        end="2026-03-01T10:00:00Z",
        time_zone="Europe/Paris" if n % 2 else None,
        description="notes" if n % 3 else None,
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=3"] if n % 4 == 0 else None,
        attendees=[Attendee("a@example.org", "A", "accepted"), Attendee("b@example.org", optional=True)][: n % 3],
        conference={"type": "hangoutsMeet", "join_url": f"https://meet.example/{n}"} if n % 5 == 0 else None,
        ical_uid=f"uid-{n}",
        sequence=n,
        extra={"google": {"reminders": {"useDefault": True}}},
    )


def test_the_content_hash_is_its_definition() -> None:
    """sha256 of json.dumps(sorted keys, compact) of every field but sequence, ical_uid and extra:
    hashes stored by earlier versions must still compare equal."""
    awkward = [
        EventData(title='q"uo\\te\t\n\x01 é 😀', start="2026-03-01", end="2026-03-02", all_day=True),
        EventData(status="cancelled", original_start="2026-03-01T09:00:00Z", location="", description="\u2028"),
        EventData(conference={"z": [1, 2.5, None], "a": {"y": True, "b": "é"}}, recurrence=["EXDATE:x", "RRULE:y"]),
        EventData(attendees=[Attendee('"q"\\ é', "N\u00e9e 😀", "declined", True, True), Attendee("", optional=1)]),
    ]
    odd = Attendee("c@example.org")
    odd.rsvp_note = "late"  # type: ignore[attr-defined]  # a field of its own: hashed with the rest
    awkward.append(EventData(attendees=[odd]))
    for n, data in enumerate([*map(_data, range(12)), *awkward]):
        body = {name: getattr(data, name) for name in data.__dataclass_fields__}
        del body["sequence"], body["ical_uid"], body["extra"]
        body["attendees"] = [vars(a) for a in data.attendees]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        assert data.content_hash() == hashlib.sha256(text.encode()).hexdigest(), n


def _defined_hash(data: EventData) -> str:
    """The content hash by its definition: json.dumps (sorted keys, compact) of the edited fields."""
    body = {name: getattr(data, name) for name in data.__dataclass_fields__}
    del body["sequence"], body["ical_uid"], body["extra"]
    body["attendees"] = [vars(a) for a in data.attendees]
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x1F600), max_size=12)  # controls, DEL, é, surrogates
_ASCII = st.text(st.characters(max_codepoint=0x7F), max_size=12)  # (controls and DEL too)
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), _TEXT, _ASCII)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=st.one_of(_TEXT, _ASCII),
    description=st.one_of(st.none(), _TEXT, _ASCII),
    recurrence=st.one_of(st.none(), st.lists(st.one_of(_ASCII, _VALUE), max_size=3)),
    conference=st.one_of(st.none(), st.dictionaries(st.one_of(_ASCII, _TEXT), _VALUE, max_size=3)),
    people=st.lists(st.tuples(st.one_of(_ASCII, _TEXT), st.one_of(st.none(), _ASCII, _TEXT), _VALUE), max_size=3),
)
@example(title="t", description=None, recurrence=[1e-07], conference=None, people=[])
@example(title="t", description=None, recurrence=None, conference={"n": float("nan"), "e": 1e16}, people=[])
@example(title="t\x7f", description=None, recurrence=None, conference=None, people=[("a", None, float("inf"))])
def test_the_content_hash_is_its_definition_for_any_content(
    title: str, description: str | None, recurrence: list[Any] | None, conference: dict[str, Any] | None,
    people: list[tuple[str, str | None, Any]],
) -> None:
    """Whichever way the hash's text is made (orjson where its text is the definition's, field by
    field otherwise), it is the definition's: text of any script, control characters and DEL, lone
    surrogates, floats, integers beyond 64 bits, in every place a value can be."""
    data = EventData(
        title=title, start="2026-03-01T09:00:00Z", end="2026-03-01T10:00:00Z", description=description,
        recurrence=recurrence, conference=conference,
        attendees=[Attendee(email, name, optional=optional) for email, name, optional in people],
    )
    assert data.content_hash() == _defined_hash(data)


def test_the_content_hash_of_plain_text_is_made_by_orjson() -> None:
    """The quick way is the one taken for what providers usually hand over (so the test above
    checks it, not only the long way)."""
    assert _hashed_text_by_orjson(_data(5)) is None  # (é in its title: the long way)
    plain = EventData(title="Standup", start="2026-03-01T09:00:00Z", end="2026-03-01T09:15:00Z",
                      attendees=[Attendee("a@example.org", "A", "accepted")], recurrence=["RRULE:FREQ=DAILY"],
                      conference={"type": "addOn", "join_url": "https://zoom.example/j/1", "provider": None})
    assert _hashed_text_by_orjson(plain) is not None
    assert plain.content_hash() == _defined_hash(plain)


@pytest.fixture()
def any_engine(db_url: str) -> Iterator[Engine]:
    """SQLite, then PostgreSQL: the store must write the same on both."""
    engine = open_engine(db_url)
    yield engine
    engine.dispose()


def _setup(engine: Engine) -> BindingRef:
    with engine.begin() as conn:
        account = account_store.create_account(conn, "google", "cost", None, {"token": "t"})
        calendar = account_store.create_calendar(conn, "cost")
        binding = account_store.create_binding(conn, calendar, account, "primary", "two-way")
    return BindingRef(binding, calendar, "remote-wins", f"google:{binding}")


def _creates(binding: BindingRef, count: int) -> list[Create]:
    items = {
        f"r{n}": RemoteEvent(f"r{n}", f'"{n}"', _data(n), updated="2026-02-01T00:00:00.000Z") for n in range(count)
    }
    state = PageState(
        items=items,
        links={},
        series={},
        dead={},
        open_conflicts={},
        claims=unknown_claims(items, {}),
        adoptable=frozenset(),
        gone_links={},
        adopted={},
        lost_creates=frozenset(),
        stand_ins={},
        paused_series=frozenset(),
        series_rules={},
    )
    plan = plan_page(binding, state, datetime(2026, 2, 2, 12, 30, 15, 123456, tzinfo=UTC), new_id)
    creates: list[Create] = plan.of(Create)
    assert len(creates) == count
    return creates


def _raw(engine: Engine, sql: str, prefix: str) -> list[tuple[Any, ...]]:
    """Rows as the driver returns them (JSON as its stored text on SQLite)."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), {"prefix": prefix})]


# text the COPY format escapes or could mistake: its NULL marker, tabs, newlines, backslashes, quotes
AWKWARD = ["\\N", "", "tab\there\nnew line\r\\back\\slash", 'quo"te \'s', "é ∑ 😀", "\\.", "a\\\\N"]


def _awkward(n: int, row: dict[str, Any]) -> dict[str, Any]:
    """An event row with awkward text in its text and JSON columns, and some tombstones."""
    text = AWKWARD[n % len(AWKWARD)]
    row = {**row, "title": text, "location": AWKWARD[(n + 1) % len(AWKWARD)] if n % 2 else None}
    row["extra"] = {"google": {"note": text, "list": [text, None, 1.5, True]}, text: {}}
    if n % 3 == 0:
        row["conference"] = {"join_url": text, "nested": {"k": [text]}}
    if n % 4 == 1:
        row.update(deleted=True, deleted_at=datetime(2026, 2, 3, 4, 5, 6, 789, tzinfo=UTC), deleted_by="x",
                   deletion_proof=text)
    return row


def test_the_bulk_insert_stores_what_sqlalchemy_stores(any_engine: Engine) -> None:
    """The same rows through insert_many (SQLite's executemany, PostgreSQL's COPY) and through
    SQLAlchemy's executemany (ids and remote ids apart): every other column of every row equal as the
    driver returns it: text the COPY format escapes, JSON, NULLs, booleans, times with their zone."""
    binding = _setup(any_engine)
    creates = _creates(binding, 30)
    with any_engine.begin() as conn:
        for way, prefix in ((insert_many, "a"), (_plain_insert, "b")):
            rows = [_awkward(n, {**c.event, "id": f"{prefix}{n:031x}"}) for n, c in enumerate(creates)]
            links = [
                {**c.link, "event_id": f"{prefix}{n:031x}", "remote_id": f"{prefix}{c.link['remote_id']}",
                 "etag": AWKWARD[n % len(AWKWARD)] if n % 2 else None}
                for n, c in enumerate(creates)
            ]
            way(conn, events, rows)
            way(conn, event_links, links)
    quick, plain = (
        _raw(any_engine, "SELECT * FROM events WHERE substr(id, 1, 1) = :prefix ORDER BY id", prefix) for prefix in "ab"
    )
    assert len(quick) == len(plain) == 30
    assert [row[1:] for row in quick] == [row[1:] for row in plain]
    assert {row[2] for row in quick} == set(AWKWARD)  # (the title: every awkward text went in)
    quick_links, plain_links = (
        _raw(
            any_engine,
            "SELECT etag, binding_id, base_version, base_hash, base_snapshot, series_remote_id, remote_updated,"
            " remote_deleted, seen_generation, created_at, updated_at FROM event_links"
            " WHERE substr(event_id, 1, 1) = :prefix ORDER BY event_id",
            prefix,
        )
        for prefix in "ab"
    )
    assert quick_links == plain_links and len(quick_links) == 30


def test_a_bulk_insert_converts_whole_columns_as_sqlalchemy_converts_each_value(any_engine: Engine) -> None:
    """insert_many converts a column at a time (one time for a column of equal times, booleans and
    JSON looked up and written in C): a column of one time, of different times, of equal instants in
    different zones, of dicts one of which orjson refuses (a key that is no text, an integer beyond 64
    bits), of 1 and 0 for booleans, each stored as SQLAlchemy stores it."""
    binding = _setup(any_engine)
    creates = _creates(binding, 6)
    now = datetime(2026, 2, 3, 4, 5, 6, 789, tzinfo=UTC)
    same_instant = now.astimezone(timezone(timedelta(hours=5)))
    refused = ({1: "int key"}, {"big": [2**70]})
    with any_engine.begin() as conn:
        for way, prefix in ((insert_many, "a"), (_plain_insert, "b")):
            rows = []
            for n, c in enumerate(creates):
                row = {**c.event, "id": f"{prefix}{n:031x}", "created_at": now}
                row["updated_at"] = same_instant if n % 2 else now + timedelta(seconds=n)
                row["extra"] = refused[n % 2] if n == 3 else {"google": {"n": n}}
                row["all_day"] = n % 2  # (1 and 0: True and False to the column)
                row["conference"] = {"join_url": f"https://j/{n}"} if n % 3 == 0 else None
                rows.append(row)
            way(conn, events, rows)
    quick, plain = (
        _raw(any_engine, "SELECT * FROM events WHERE substr(id, 1, 1) = :prefix ORDER BY id", prefix) for prefix in "ab"
    )
    assert len(quick) == len(plain) == 6
    assert [row[1:] for row in quick] == [row[1:] for row in plain]


def test_a_bulk_insert_on_postgresql_is_one_copy(any_engine: Engine) -> None:
    """On PostgreSQL a page's rows go in by COPY, not an INSERT per row (the driver's executemany):
    no INSERT passes through SQLAlchemy; on SQLite, one executemany of the compiled INSERT."""
    binding = _setup(any_engine)
    rows = [c.event for c in _creates(binding, 20)]
    seen: list[tuple[str, bool]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, many: bool) -> None:
        seen.append((statement.split()[0], many))

    with any_engine.begin() as conn:
        event.listen(conn, "before_cursor_execute", capture)
        insert_many(conn, events, rows)
        event.remove(conn, "before_cursor_execute", capture)
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 20
    assert seen == ([] if any_engine.dialect.name == "postgresql" else [("INSERT", True)])


def test_a_bulk_insert_that_breaks_a_constraint_raises_sqlalchemys_error(any_engine: Engine) -> None:
    """A duplicate key is an IntegrityError whichever way the rows went in (outbound catches it)."""
    binding = _setup(any_engine)
    rows = [c.event for c in _creates(binding, 3)]
    with any_engine.begin() as conn:
        insert_many(conn, events, rows)
    with pytest.raises(IntegrityError), any_engine.begin() as conn:
        insert_many(conn, events, [{**rows[0], "id": new_id()}, rows[1]])
    with any_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 3


def test_a_bulk_insert_refuses_what_the_column_type_refuses(any_engine: Engine) -> None:
    """A value the column's type would not bind (a string for a boolean, a naive time) is refused, not
    stored as whatever the driver makes of it."""
    binding = _setup(any_engine)
    row = _creates(binding, 1)[0].event
    for bad in ({"deleted": "yes"}, {"created_at": datetime(2026, 1, 1)}):
        with pytest.raises((TypeError, ValueError, StatementError)), any_engine.begin() as conn:
            insert_many(conn, events, [row, {**row, "id": new_id(), **bad}])
    with any_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 0


def _plain_insert(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    conn.execute(table.insert(), rows)


def test_creation_rows_are_what_record_of_created_writes(any_engine: Engine) -> None:
    binding = _setup(any_engine)
    creates = _creates(binding, 12)
    rows = [c.event for c in creates]
    etags = {row["id"]: f"etag-{n}" if n % 2 else None for n, row in enumerate(rows)}
    author = journal.author_of_source(binding.source)
    with any_engine.begin() as conn:
        insert_many(conn, events, rows)
        journal.record_created(conn, rows, author, etags)
        journal.record(conn, [journal.created(row, etags[row["id"]]) for row in rows], author)
    columns = [c for c in event_changes.c if c.key not in ("id", "created_at", "position")]
    with any_engine.connect() as conn:
        found = [tuple(r) for r in conn.execute(select(*columns).order_by(event_changes.c.id))]
    assert len(found) == 24
    assert found[:12] == found[12:]
    assert [r[2] for r in found[:12]] == [row["id"] for row in rows]  # in the rows' order


def _statements_per_page(engine: Engine, events_per_page: int, pages: int) -> list[int]:
    """SQL statements each page of an initial sync runs, with the memory provider."""
    service = MemoryService()
    calendar = service.add_calendar("cost")
    start = datetime(2026, 5, 1, 8, tzinfo=UTC)
    for n in range(events_per_page * pages):
        at = start + timedelta(hours=n)
        service.insert(
            calendar, EventData(title=f"e{n}", start=at.isoformat(), end=(at + timedelta(minutes=30)).isoformat())
        )
    with engine.begin() as conn:
        account = account_store.create_account(conn, "memory", "cost", None, {"token": "t"})
        local = account_store.create_calendar(conn, "cost")
        binding = account_store.create_binding(conn, local, account, calendar, "two-way")
    counts: list[int] = []
    current = [0]

    def count(*_: Any) -> None:
        current[0] += 1

    def page_done(*_: Any) -> None:
        counts.append(current[0])
        current[0] = 0

    event.listen(engine, "before_cursor_execute", count)
    try:
        result = sync_binding(engine, MemoryProvider(service, page_size=events_per_page), binding, after_page=page_done)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert result.status == "ok" and result.created == events_per_page * pages
    return counts


def test_the_statements_of_a_page_do_not_grow_with_its_events(engine: Engine, tmp_path: Any) -> None:
    small = _statements_per_page(engine, 20, 3)
    other = open_engine(f"sqlite:///{tmp_path / 'big.db'}")
    try:
        big = _statements_per_page(other, 400, 3)
    finally:
        other.dispose()
    assert len(small) == len(big) == 3
    # a batched page: twenty times the events, no more than a chunk's worth of statements more
    assert max(big) <= max(small) + 8, (small, big)
    assert max(big) < 60, big


def test_on_postgresql_a_pages_statements_are_the_same_for_20_events_and_1200(pg_url: str) -> None:
    """On PostgreSQL a page's lookups take all of its ids in one statement each (store/common
    one_of_chunks: one JSON text of any length), so a page of 1,200 events runs exactly the
    statements of a page of 20 (SQLite takes them 500 at a time: see the test above)."""
    engine = open_engine(pg_url)
    try:
        small = _statements_per_page(engine, 20, 2)
        big = _statements_per_page(engine, 1200, 2)  # (an account and binding of its own)
    finally:
        engine.dispose()
    assert small == big, (small, big)


def test_a_plan_grouped_by_kind_is_its_actions_of_each_kind() -> None:
    """write_page reads the plan once, grouped: each kind's actions as of(kind) gives them, in order."""
    plan = PagePlan(
        actions=[
            Delete("e1", "p1"),
            UpdateLink({"link_id": 1}),
            Delete("e2", "p2"),
            Relink("e3", "r3", None),
            UpdateLink({"link_id": 2}),
            Delete("e4", "p4"),
        ]
    )
    groups = plan.grouped()
    assert set(groups) == {Delete, UpdateLink, Relink}
    for kind in (Delete, UpdateLink, Relink, Create, Adopt, TakeRemote, Merge, OpenConflict, CloseConflict):
        assert groups.get(kind, []) == plan.of(kind)
    assert [d.event_id for d in groups[Delete]] == ["e1", "e2", "e4"]


_EMPTY_OR_NOT: dict[str, list[Any]] = {
    "title": ["", "t", "0"],
    "description": [None, "", "notes", "0"],
    "location": [None, "", "Room 1"],
    "time_zone": [None, "", "Europe/Paris"],
    "status": ["", "confirmed", "cancelled"],
    "original_start": [None, "", "2026-03-01T09:00:00Z"],
    "recurrence": [None, [], ["RRULE:FREQ=DAILY"]],
    "attendees": [[], [{"email": "a@example.org", "name": None, "response": "accepted", "optional": False,
                        "organizer": False}]],
    "conference": [None, {}, {"join_url": "https://meet.example/x"}],
    "all_day": [False, True],
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.fixed_dictionaries({name: st.sampled_from(values) for name, values in _EMPTY_OR_NOT.items()}),
                min_size=1, max_size=8))
def test_the_database_names_the_set_fields_of_a_created_row_as_python_does(
    any_engine: Engine, choices: list[dict[str, Any]]
) -> None:
    """record_created has the database list a new row's non-empty history fields: every mix of empty
    and set values (None, "", [], {}, false) gets the names _set_fields gives, in its order."""
    binding = _setup(any_engine)
    rows = [{**create.event, **choice} for create, choice in zip(_creates(binding, len(choices)), choices, strict=True)]
    for row in rows:
        row["id"] = new_id()
    with any_engine.begin() as conn:
        insert_many(conn, events, rows)
        journal.record_created(conn, rows, journal.author_of_source(binding.source), {})
    with any_engine.connect() as conn:
        stored = dict(conn.execute(select(event_changes.c.event_id, event_changes.c.fields).where(
            event_changes.c.event_id.in_([row["id"] for row in rows]))).all())
    assert [stored[row["id"]] for row in rows] == [journal._set_fields(row) for row in rows]


def test_jsonb_text_is_the_same_value_and_falls_back_where_orjson_refuses() -> None:
    from calsync.store.common import json_text

    for value in ({"google": {"reminders": {"useDefault": True}}, "é": [1, 2.5, None, "\\N\t"]}, [{"a": "😀"}], []):
        assert json.loads(json_text(value)) == value
    assert json_text({1: "int key"}) == dumps({1: "int key"}) == '{"1": "int key"}'
    assert json.loads(json_text([2**70])) == [2**70]


def test_created_rows_of_two_authors_and_etags_are_each_their_own(any_engine: Engine) -> None:
    """record_created's statement is built once and reused: who, ETags and time are parameters of each
    call, never the first call's."""
    binding = _setup(any_engine)
    rows = [c.event for c in _creates(binding, 4)]
    first, second = rows[:2], rows[2:]
    with any_engine.begin() as conn:
        insert_many(conn, events, rows)
        journal.record_created(conn, first, journal.Author("local", "api key one"), {first[0]["id"]: "e-1"})
        journal.record_created(conn, second, journal.author_of_source(binding.source), {second[1]["id"]: "e-4"})
    with any_engine.connect() as conn:
        found = {r.event_id: (r.side, r.author, r.remote_etag) for r in conn.execute(
            select(event_changes.c.event_id, event_changes.c.side, event_changes.c.author,
                   event_changes.c.remote_etag))}
    binding_author = journal.author_of_source(binding.source)
    assert found == {
        first[0]["id"]: ("local", "api key one", "e-1"),
        first[1]["id"]: ("local", "api key one", None),
        second[0]["id"]: (binding_author.side, binding_author.name, None),
        second[1]["id"]: (binding_author.side, binding_author.name, "e-4"),
    }
