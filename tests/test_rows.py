"""The typed rows of store/rows.py and the value sets of statuses.py against what the store really holds:
a TypedDict names exactly the columns its table (or query) has, and every query function returns rows
with exactly its type's keys, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, get_args

import pytest
from sqlalchemy import Engine

from calsync import statuses
from calsync.engine import local
from calsync.model import EventData, utcnow
from calsync.store import accounts as account_store
from calsync.store import conferences as conference_store
from calsync.store import conflicts as conflict_store
from calsync.store import event_pages, journal, rows, scheduling, users
from calsync.store import hooks as hook_store
from calsync.store import events as event_store
from calsync.store import links as link_store
from calsync.store import outbox as outbox_store
from calsync.store.db import open_engine
from calsync.store.schema import (
    accounts,
    bindings,
    calendars,
    channels,
    conference_outbox,
    conferences,
    conflicts,
    event_links,
    events,
    outbox,
    webhook_deliveries,
    webhook_subscriptions,
)


def _keys(row_type: Any) -> set[str]:
    assert row_type.__optional_keys__ == frozenset()  # every key is always there
    return set(row_type.__required_keys__)


def _columns(table: Any) -> set[str]:
    return {c.name for c in table.columns}


@pytest.mark.parametrize(("row_type", "table"), [
    (rows.CalendarRow, calendars), (rows.BindingRow, bindings), (rows.EventRow, events),
    (rows.EventLinkRow, event_links), (rows.OutboxRow, outbox), (rows.ConflictRow, conflicts),
    (rows.ConferenceRow, conferences), (rows.ConferenceWorkRow, conference_outbox), (rows.ChannelRow, channels),
    (rows.DeliveryRow, webhook_deliveries),
])
def test_a_table_row_type_names_exactly_its_columns(row_type: Any, table: Any) -> None:
    assert _keys(row_type) == _columns(table)


def test_the_other_row_types_are_what_their_queries_select() -> None:
    assert _keys(rows.AccountRow) == _columns(accounts) - {"credentials_sealed"}
    assert _keys(rows.WebhookRow) == _columns(webhook_subscriptions) - {"secret_sealed"}
    assert _keys(rows.EventWithLinks) == _columns(events) | {"links"}
    assert _keys(rows.LinkSummary) < _columns(event_links)
    assert _keys(rows.BindingClaim) < _columns(bindings)


def test_value_sets_keep_their_order_and_defaults() -> None:
    """The tuples are the Literals' own values, in the order messages and help texts list them."""
    assert statuses.DIRECTIONS == ("two-way", "pull", "push")
    assert statuses.CONFLICT_POLICIES == ("ask", "local-wins", "remote-wins", "latest-wins", "merge")
    assert set(statuses.PUSHING) < set(get_args(statuses.Direction))
    assert set(statuses.OPEN_CHANNEL_STATES) < set(get_args(statuses.ChannelState))
    assert set(get_args(statuses.SyncFailure)) < set(get_args(statuses.LastSyncStatus))
    assert set(get_args(statuses.LastSyncStatus)) < set(get_args(statuses.SyncStatus))
    assert bindings.c.conflict_policy.default.arg in statuses.CONFLICT_POLICIES
    assert accounts.c.state.default.arg in get_args(statuses.AccountState)
    assert conflicts.c.status.default.arg in get_args(statuses.ConflictStatus)


def test_query_functions_return_rows_with_exactly_their_types_keys(db_url: str) -> None:
    engine: Engine = open_engine(db_url)
    now = utcnow()
    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "c")
        account = account_store.create_account(conn, "caldav", "a", "http://x/", {"username": "u"})
        binding = account_store.create_binding(conn, calendar, account, "/cal/", "two-way")
    event_id = local.create_event(engine, calendar, {"title": "t", "start": "2026-12-01T08:00:00Z",
                                                     "end": "2026-12-01T09:00:00Z"}).event_id
    with engine.begin() as conn:
        data = event_store.event_data(conn, event_id)
        link_store.agree_link(conn, event_id, binding, "r1", '"e"', 1, data, create=True)
        conflict_id = conflict_store.record_conflict(
            conn, event_id=event_id, binding_id=binding, kind="edit-edit", local=data.to_json(),
            remote=EventData(title="x", start=data.start, end=data.end).to_json(), base=None, remote_etag='"f"')
        conference_id = conference_store.insert_conference(
            conn, event_id=event_id, provider="jitsi", conference_id="m", state="active", idempotency_key="k")
        conference_store.enqueue(conn, [event_id], "inbound", now=now - timedelta(seconds=1))
        scheduling.add_channel(conn, "ch", binding, {"state": "active", "channel_id": "ch", "resource_id": "res"})

    def check(row_type: Any, found: Any) -> None:
        assert found, row_type.__name__
        for row in found if isinstance(found, list) else [found]:
            assert set(row) == _keys(row_type), row_type.__name__

    with engine.begin() as conn:
        check(rows.AccountRow, account_store.list_accounts(conn))
        check(rows.CalendarRow, account_store.list_calendars(conn))
        check(rows.BindingRow, [account_store.get_binding(conn, binding), *account_store.list_bindings(conn),
                                account_store.find_binding(conn, account, "/cal/"),
                                account_store.binding_and_provider(conn, binding)[0]])
        listed = [*event_store.list_events(conn), *event_store.get_events(conn, [event_id]),
                  *event_pages.page_events(conn).rows]
        check(rows.EventWithLinks, listed)
        check(rows.LinkSummary, [link for row in listed for link in row["links"]])
        check(rows.EventLinkRow, link_store.link_of(conn, event_id, binding))
        check(rows.OutboxRow, outbox_store.pending_for_binding(conn, binding, now))
        check(rows.EventSyncState, outbox_store.sync_states(conn, listed)[event_id])
        check(rows.ConflictRow, [conflict_store.get_conflict(conn, conflict_id),
                                 *conflict_store.list_conflicts(conn), *conflict_store.open_conflicts_of_event(
                                     conn, event_id)])
        check(rows.ConferenceRow, [conference_store.get_conference(conn, conference_id),
                                   conference_store.active_conference(conn, event_id),
                                   conference_store.latest_conference(conn, event_id),
                                   *conference_store.list_conferences(conn)])
        check(rows.ConferenceWorkRow, conference_store.due_work(conn, now))
        check(rows.ChannelRow, [*conference_store.list_channels(conn), *scheduling.open_channels(conn, binding),
                                scheduling.channel_by_channel_id(conn, "ch"),
                                scheduling.channel_by_resource_id(conn, "res"),
                                *scheduling.channel_health(conn).values()])
        check(rows.ConferenceWorkRow, scheduling.claim_conference_work(conn, "w", now, 60))
        check(rows.BindingClaim, scheduling.claim_named_binding(conn, binding, "w", now, 60))
    with engine.begin() as conn:
        event_store.tombstone_events(conn, {event_id: "a test deleted it"}, "local")
        conn.execute(events.update().where(events.c.id == event_id).values(recurring_event_id=event_id))
        check(rows.EventRow, link_store.deleted_exceptions_linked(conn, event_id, binding))
        conn.execute(bindings.update().values(lease_until=None))
        check(rows.BindingClaim, scheduling.claim_binding(conn, "w", utcnow(), 60))  # due from its creation on
    with engine.begin() as conn:
        hook = hook_store.create_subscription(conn, users.default_owner(conn), "https://8.8.8.8/", ["updated"], None,
                                              "whsec_" + "A" * 44)
    other = local.create_event(engine, calendar, {"title": "u", "start": "2026-12-01T08:00:00Z",
                                                  "end": "2026-12-01T09:00:00Z"}).event_id
    local.update_event(engine, other, {"title": "v"}, None)
    with engine.begin() as conn:
        journal.sequence(conn)
    with engine.begin() as conn:
        assert hook_store.fan_out(conn, hook["id"]) == (1, False)
        check(rows.WebhookRow, [hook, hook_store.get_subscription(conn, hook["id"]),
                                *hook_store.list_subscriptions(conn)])
        (delivery,) = hook_store.list_deliveries(conn, hook["id"])
        check(rows.DeliveryRow, [delivery, hook_store.get_delivery(conn, hook["id"], delivery["id"]),
                                 *hook_store.claim_due(conn, "w", utcnow(), 60)])
