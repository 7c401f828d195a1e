"""Conference lifecycle against the Google and Zoom emulators over HTTP, into a real SQLite store."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from calsync.conferencing.base import ConferenceAdapter, ConferenceError
from calsync.conferencing.zoom import ZoomAdapter
from calsync.engine.conferences import ConferenceEngine, ConferenceWorkError
from calsync.engine.inbound import apply_remote_changes
from calsync.engine.pool import ProviderPool
from calsync.engine.sync import SyncReport, sync_once
from calsync.model import EventData
from calsync.providers.google import GoogleProvider
from calsync.store import conferences as store
from calsync.store import repo
from calsync.store.schema import conference_outbox
from tests.helpers import GoogleApi, ZoomApi, admin, bind, local_create, local_events, zoom_settings

START = datetime(2026, 12, 1, 9, tzinfo=UTC)



@pytest.fixture()
def adapters(zoom_url: str) -> Iterator[dict[str, ConferenceAdapter]]:
    zoom = ZoomAdapter.from_settings(zoom_settings(zoom_url))
    assert zoom is not None
    yield {"zoom": zoom}
    zoom.close()



@pytest.fixture()
def zoom(zoom_url: str) -> ZoomApi:
    return ZoomApi(zoom_url)


class World:
    """One bound Google calendar with a synced store, and the conference engine."""

    def __init__(self, engine: Engine, google_url: str, api: GoogleApi, adapters: dict[str, ConferenceAdapter],
                 calendar: str | None = None) -> None:
        self.engine, self.api, self.adapters = engine, api, adapters
        self.calendar = calendar or api.primary_id()
        self.binding = bind(engine, google_url, "alice", self.calendar)

    def sync(self, now: datetime | None = None) -> SyncReport:
        return sync_once(self.engine, adapters=self.adapters, now=now)

    def create(self, remote_id: str, provider: str = "zoom") -> dict[str, Any]:
        pool = ProviderPool(self.engine)
        try:
            return ConferenceEngine(self.engine, self.adapters, pool).create(self.local_id(remote_id), provider)
        finally:
            pool.close()

    def local_id(self, remote_id: str) -> str:
        return str(local_events(self.engine, self.binding, include_deleted=True)[remote_id]["id"])

    def record(self, remote_id: str) -> dict[str, Any]:
        with self.engine.begin() as conn:
            row = store.latest_conference(conn, self.local_id(remote_id))
        assert row is not None
        return row

    def remote(self, remote_id: str) -> dict[str, Any]:
        return self.api.http.get(f"/calendars/{self.calendar}/events/{remote_id}").raise_for_status().json()


@pytest.fixture()
def world(engine: Engine, google_url: str, alice: GoogleApi, adapters: dict[str, ConferenceAdapter]) -> World:
    return World(engine, google_url, alice, adapters)


def with_meeting(world: World, zoom: ZoomApi, summary: str = "Design review") -> tuple[str, dict[str, Any]]:
    event = world.api.insert(world.calendar, summary, at=START, description="Agenda: sketches")
    world.sync()
    record = world.create(event["id"])
    zoom.clear_log()
    return event["id"], record


def test_create_puts_the_meeting_on_the_event_and_watches_the_calendar(
    world: World, zoom: ZoomApi
) -> None:
    event = world.api.insert(world.calendar, "Design review", at=START)
    world.sync()
    record = world.create(event["id"])
    meeting = zoom.meeting(record["conference_id"])
    assert meeting is not None
    assert meeting["topic"] == "Design review" and meeting["duration"] == 60
    assert meeting["start_time"].startswith("2026-12-01T09:00:00")
    remote = world.remote(event["id"])["conferenceData"]
    assert remote["conferenceSolution"]["key"]["type"] == "addOn"
    assert remote["conferenceSolution"]["name"] == world.adapters["zoom"].solution_name
    assert remote["conferenceId"] == record["conference_id"]
    assert remote["entryPoints"][0]["uri"] == record["join_url"]
    local = local_events(world.engine, world.binding)[event["id"]]
    assert local["conference"]["conference_id"] == record["conference_id"]
    with world.engine.begin() as conn:
        assert [c["state"] for c in store.list_channels(conn, world.binding)] == ["intent"]
    # our own write-back echoing through the next sync changes nothing, and costs Zoom nothing
    zoom.clear_log()
    report = world.sync()
    assert report.inbound[0].updated == 0 and zoom.api_calls() == []


def test_moving_the_event_moves_the_meeting(world: World, zoom: ZoomApi) -> None:
    remote_id, record = with_meeting(world, zoom)
    new_start = START + timedelta(days=1, hours=2)
    world.api.patch(world.calendar, remote_id, start={"dateTime": new_start.isoformat()},
                    end={"dateTime": (new_start + timedelta(minutes=90)).isoformat()})
    report = world.sync()
    assert report.conferences.updated == 1
    meeting = zoom.meeting(record["conference_id"])
    assert meeting is not None
    assert meeting["start_time"].startswith("2026-12-02T11:00:00") and meeting["duration"] == 90
    assert [c["method"] for c in zoom.api_calls()].count("PATCH") == 1


def test_rename_and_attendee_added_update_the_meeting(world: World, zoom: ZoomApi) -> None:
    remote_id, record = with_meeting(world, zoom)
    world.api.patch(world.calendar, remote_id, summary="Design review (final)")
    world.sync()
    meeting = zoom.meeting(record["conference_id"])
    assert meeting is not None and meeting["topic"] == "Design review (final)"
    zoom.clear_log()
    world.api.patch(world.calendar, remote_id, attendees=[{"email": "bob@example.com"}])
    assert world.sync().conferences.updated == 1
    assert [c["method"] for c in zoom.api_calls()].count("PATCH") == 1


@pytest.mark.parametrize("how", ["delete", "cancel"])
def test_deleting_or_cancelling_the_event_deletes_the_meeting(world: World, zoom: ZoomApi, how: str) -> None:
    remote_id, record = with_meeting(world, zoom)
    if how == "delete":
        world.api.delete(world.calendar, remote_id)
    else:
        world.api.patch(world.calendar, remote_id, status="cancelled")
    assert world.sync().conferences.deleted == 1
    assert zoom.meeting(record["conference_id"]) is None
    assert world.record(remote_id)["state"] == "deleted"


def test_a_colour_change_costs_zoom_nothing(world: World, zoom: ZoomApi) -> None:
    remote_id, _ = with_meeting(world, zoom)
    world.api.patch(world.calendar, remote_id, colorId="5")
    report = world.sync()
    assert report.inbound[0].updated == 1
    assert zoom.api_calls() == []


def test_meet_and_foreign_conferences_are_left_alone(world: World, zoom: ZoomApi) -> None:
    meet = world.api.http.post(
        f"/calendars/{world.calendar}/events", params={"conferenceDataVersion": 1},
        json={"summary": "Meet call", "start": {"dateTime": START.isoformat()},
              "end": {"dateTime": (START + timedelta(hours=1)).isoformat()},
              "conferenceData": {"createRequest": {"requestId": "r1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}}},
    ).raise_for_status().json()
    world.api.seed(world.calendar, 6, conference_every=2)  # someone else's add-on conferences named "Zoom"
    report = world.sync()
    world.api.patch(world.calendar, meet["id"], summary="Meet call (moved)")
    world.api.delete(world.calendar, meet["id"])
    report = world.sync()
    assert report.conferences.processed == 0
    assert zoom.api_calls() == []
    with world.engine.begin() as conn:
        assert store.list_conferences(conn) == []


def test_conference_removed_by_the_user_deletes_the_meeting(world: World, zoom: ZoomApi) -> None:
    remote_id, record = with_meeting(world, zoom)
    current = world.remote(remote_id)
    body = {k: v for k, v in current.items() if k != "conferenceData"}
    world.api.http.put(f"/calendars/{world.calendar}/events/{remote_id}", params={"conferenceDataVersion": 1},
                       json=body).raise_for_status()
    assert world.sync().conferences.deleted == 1
    assert zoom.meeting(record["conference_id"]) is None


def test_zoom_down_delays_the_work_and_loses_none(world: World, zoom: ZoomApi, zoom_url: str) -> None:
    remote_id, record = with_meeting(world, zoom)
    admin(zoom_url, "POST", "/faults", json={"status": 503})
    world.api.patch(world.calendar, remote_id, summary="Renamed while Zoom is down")
    down = world.sync()
    assert down.conferences.retried == 1 and down.conferences.updated == 0
    with world.engine.begin() as conn:
        assert store.backlog(conn) == 1
    admin(zoom_url, "DELETE", "/faults")
    assert world.sync().conferences.processed == 0, "not due yet: backoff is respected"
    later = world.sync(now=datetime.now(UTC) + timedelta(hours=2))
    assert later.conferences.updated == 1
    meeting = zoom.meeting(record["conference_id"])
    assert meeting is not None and meeting["topic"] == "Renamed while Zoom is down"
    with world.engine.begin() as conn:
        assert store.backlog(conn) == 0


def test_duplicate_delivery_of_one_change_is_one_update(world: World, zoom: ZoomApi, google_url: str) -> None:
    remote_id, _ = with_meeting(world, zoom)
    world.api.patch(world.calendar, remote_id, summary="Once")
    provider = GoogleProvider("alice", google_url)
    changed = provider.get_event(world.calendar, remote_id)
    provider.close()
    assert changed is not None
    apply_remote_changes(world.engine, world.binding, [changed])
    apply_remote_changes(world.engine, world.binding, [changed])  # the same change delivered again
    with world.engine.begin() as conn:
        pending = conn.execute(select(func.count()).select_from(conference_outbox)
                               .where(conference_outbox.c.status == "pending")).scalar_one()
    assert pending == 1
    world.sync()  # and once more through the normal listing
    world.sync()
    assert [c["method"] for c in zoom.api_calls()].count("PATCH") == 1


def test_write_back_on_412_rereads_and_keeps_the_users_edit(
    world: World, zoom: ZoomApi, google_url: str
) -> None:
    event = world.api.insert(world.calendar, "Planning", at=START)
    world.sync()
    world.api.patch(world.calendar, event["id"], location="Room 7")  # our link's ETag is now stale
    admin(google_url, "DELETE", "/requests")
    world.create(event["id"])
    statuses = [r["status"] for r in admin(google_url, "GET", "/requests").json()["requests"] if r["method"] == "PUT"]
    assert statuses[0] == 412 and statuses[-1] == 200
    remote = world.remote(event["id"])
    assert remote["location"] == "Room 7", "the user's concurrent edit survives"
    assert remote["conferenceData"]["conferenceSolution"]["key"]["type"] == "addOn"
    assert local_events(world.engine, world.binding)[event["id"]]["location"] == "Room 7"


def test_each_calendar_gets_exactly_one_channel(
    engine: Engine, google_url: str, alice: GoogleApi, adapters: dict[str, ConferenceAdapter], zoom: ZoomApi
) -> None:
    first = World(engine, google_url, alice, adapters)
    second = World(engine, google_url, alice, adapters, calendar=alice.create_calendar("Team"))
    ids = [(w, w.api.insert(w.calendar, f"meeting {n}", at=START + timedelta(hours=n))["id"])
           for w in (first, second) for n in range(3)]
    first.sync()
    for w, remote_id in ids:
        w.create(remote_id)
    with engine.begin() as conn:
        for w in (first, second):
            assert len(store.list_channels(conn, w.binding)) == 1
        assert len(store.list_conferences(conn, "active")) == 6


def test_restored_event_gets_a_new_meeting(world: World, zoom: ZoomApi) -> None:
    remote_id, record = with_meeting(world, zoom)
    world.api.delete(world.calendar, remote_id)
    world.sync()
    assert zoom.meeting(record["conference_id"]) is None
    world.api.patch(world.calendar, remote_id, status="confirmed")  # undo the deletion
    report = world.sync()
    assert report.conferences.created == 1
    fresh = world.record(remote_id)
    assert fresh["state"] == "active" and fresh["conference_id"] != record["conference_id"]
    assert zoom.meeting(fresh["conference_id"]) is not None
    assert world.remote(remote_id)["conferenceData"]["conferenceId"] == fresh["conference_id"]


def test_bad_requests_are_refused_clearly(world: World, zoom: ZoomApi) -> None:
    remote_id, _ = with_meeting(world, zoom)
    pool = ProviderPool(world.engine)
    conference = ConferenceEngine(world.engine, world.adapters, pool)
    with pytest.raises(ConferenceWorkError, match="already has a conference"):
        conference.create(world.local_id(remote_id), "zoom")
    with pytest.raises(ConferenceWorkError, match="not configured"):
        conference.create(world.local_id(remote_id), "webhook")
    with pytest.raises(repo.NotFound):
        conference.create("0" * 32, "zoom")
    pool.close()


def test_local_only_event_keeps_its_conference_locally(world: World, zoom: ZoomApi) -> None:
    with world.engine.begin() as conn:
        calendar = repo.create_calendar(conn, "local only")
    event_id = local_create(world.engine, calendar, EventData(title="Local", start="2026-12-05T10:00:00Z",
                                                                end="2026-12-05T10:30:00Z"))
    pool = ProviderPool(world.engine)
    row = ConferenceEngine(world.engine, world.adapters, pool).create(event_id, "zoom")
    pool.close()
    with world.engine.begin() as conn:
        data = repo.event_data(conn, event_id)
    assert data.conference is not None and data.conference["conference_id"] == row["conference_id"]
    assert zoom.meeting(row["conference_id"]) is not None  # in Zoom, though no calendar carries it yet


def test_a_create_lost_in_a_crash_is_adopted_not_made_twice(
    world: World, zoom: ZoomApi, zoom_url: str
) -> None:
    event = world.api.insert(world.calendar, "Kickoff", at=START)
    world.sync()
    zoom.clear_log()
    # Zoom makes the meeting, then the answer is lost as if the worker died before recording it
    admin(zoom_url, "POST", "/faults", json={"status": 400, "count": 1, "after_commit": True,
                                             "methods": ["POST"], "path_prefix": "/v2/"})
    with pytest.raises(ConferenceError):
        world.create(event["id"])
    admin(zoom_url, "DELETE", "/faults")
    record = world.create(event["id"])
    listed = zoom.http.get("/users/me/meetings", params={"page_size": 300}).raise_for_status().json()["meetings"]
    assert [str(m["id"]) for m in listed] == [record["conference_id"]]


def test_a_first_create_does_not_pay_for_a_lookup(world: World, zoom: ZoomApi) -> None:
    event = world.api.insert(world.calendar, "Kickoff", at=START)
    world.sync()
    zoom.clear_log()
    world.create(event["id"])
    assert [c["method"] for c in zoom.api_calls()] == ["POST"]


def test_an_occurrence_change_leaves_the_series_meeting_alone(world: World, zoom: ZoomApi) -> None:
    series = world.api.insert(
        world.calendar, "Weekly 1:1", recurrence=["RRULE:FREQ=WEEKLY;COUNT=8"],
        start={"dateTime": START.isoformat(), "timeZone": "UTC"},
        end={"dateTime": (START + timedelta(minutes=30)).isoformat(), "timeZone": "UTC"},
    )
    world.sync()
    record = world.create(series["id"])
    zoom.clear_log()
    instances = world.api.http.get(f"/calendars/{world.calendar}/events/{series['id']}/instances").json()["items"]
    moved = world.api.patch(world.calendar, instances[2]["id"], summary="Weekly 1:1 (this week only)")
    assert moved["conferenceData"]["conferenceId"] == record["conference_id"]  # the occurrence carries a copy
    world.sync()
    assert zoom.api_calls() == [], "one occurrence must not rewrite the series' meeting"
    meeting = zoom.meeting(record["conference_id"])
    assert meeting is not None and meeting["topic"] == "Weekly 1:1"
    world.api.patch(world.calendar, series["id"], summary="Weekly 1:1 with Bob")
    assert world.sync().conferences.updated == 1
