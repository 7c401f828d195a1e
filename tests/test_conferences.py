"""Conference lifecycle (engine/conferences.py) against the Zoom emulator over HTTP, into a real SQLite
store, for every calendar provider: Google and Graph (emulators), Radicale and Xandikos (real servers
behind the fault proxy). The calendar side is changed by another client through `tests.remotes.Remote`.

What is Google's own (Meet and other add-ons' conferenceData, colours, instances of a series, the
add-on conferenceSolution) is tested on Google only, at the end of the file."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from calsync.conferencing.base import ConferenceAdapter, ConferenceError
from calsync.conferencing.zoom import ZoomAdapter
from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.engine.conferences import ConferenceEngine, ConferenceWorkError
from calsync.engine.inbound import apply_remote_changes
from calsync.engine.pool import ProviderPool
from calsync.engine.scheduler import Worker, WorkerSettings
from calsync.engine.sync import SyncReport, sync_once
from calsync.model import Account, EventData, RemoteEvent, utcnow
from calsync.providers.base import Provider
from calsync.store import accounts as account_store
from calsync.store import conferences as store
from calsync.store import events as event_store
from calsync.store.common import NotFound
from calsync.store.schema import bindings, conference_outbox
from tests.helpers import (
    GoogleApi,
    ZoomApi,
    admin,
    local_create,
    local_events,
    zoom_settings,
)
from tests.remotes import GoogleRemote, Remote, open_remote

START = datetime(2026, 12, 1, 9, tzinfo=UTC)
POLL_REMOTES = ("radicale", "xandikos")  # providers without push: polled, never watched
RESTORABLE_REMOTES = ("google", "radicale", "xandikos")  # cancelling an Outlook event deletes it


@pytest.fixture()
def adapters(zoom_url: str) -> Iterator[dict[str, ConferenceAdapter]]:
    zoom = ZoomAdapter.from_settings(zoom_settings(zoom_url))
    assert zoom is not None
    yield {"zoom": zoom}
    zoom.close()


@pytest.fixture()
def zoom(zoom_url: str) -> ZoomApi:
    return ZoomApi(zoom_url)


@pytest.fixture(params=POLL_REMOTES)
def poll_remote(request: pytest.FixtureRequest) -> Remote:
    """The providers without push notifications (CalDAV servers)."""
    return open_remote(str(request.param), request)


class World:
    """One bound remote calendar with a synced store, and the conference engine."""

    def __init__(self, engine: Engine, remote: Remote, adapters: dict[str, ConferenceAdapter],
                 calendar: str | None = None) -> None:
        self.engine, self.remote, self.adapters = engine, remote, adapters
        self.calendar = calendar or remote.calendar
        self.binding = remote.bind(engine, self.calendar)
        self.make_provider: Callable[[Account], Provider] = remote.make_provider()

    def sync(self, now: datetime | None = None) -> SyncReport:
        return sync_once(self.engine, adapters=self.adapters, now=now, make_provider=self.make_provider)

    def conferences(self) -> tuple[ConferenceEngine, ProviderPool]:
        pool = ProviderPool(self.engine, self.make_provider)
        return ConferenceEngine(self.engine, self.adapters, pool), pool

    def create(self, remote_id: str, provider: str = "zoom") -> dict[str, Any]:
        return self.create_for(self.local_id(remote_id), provider)

    def create_for(self, event_id: str, provider: str = "zoom") -> dict[str, Any]:
        conference, pool = self.conferences()
        try:
            return conference.create(event_id, provider)
        finally:
            pool.close()

    def insert(self, title: str, at: datetime = START, **fields: Any) -> str:
        return self.remote.insert(title, at, self.calendar, **fields)

    def change(self, remote_id: str, **fields: Any) -> None:
        self.remote.change(remote_id, self.calendar, **fields)

    def text(self, remote_id: str) -> str:
        """The event as another client reads it (iCalendar lines unfolded, RFC 5545 3.1)."""
        return re.sub(r"\r?\n[ \t]", "", self.remote.text_of(remote_id, self.calendar))

    def fetch(self, remote_id: str) -> RemoteEvent | None:
        """The event as calsync's own provider reads it."""
        with self.engine.begin() as conn:
            account = account_store.get_account(conn, account_store.get_binding(conn, self.binding)["account_id"])
        provider = self.make_provider(account)
        try:
            return provider.get_event(self.calendar, remote_id)
        finally:
            provider.close()

    def local_id(self, remote_id: str) -> str:
        return str(local_events(self.engine, self.binding, include_deleted=True)[remote_id]["id"])

    def record(self, remote_id: str) -> dict[str, Any]:
        with self.engine.begin() as conn:
            row = store.latest_conference(conn, self.local_id(remote_id))
        assert row is not None
        return row

    def channels(self) -> list[dict[str, Any]]:
        with self.engine.begin() as conn:
            return store.list_channels(conn, self.binding)


@pytest.fixture()
def world(engine: Engine, remote: Remote, adapters: dict[str, ConferenceAdapter]) -> World:
    return World(engine, remote, adapters)


@pytest.fixture(params=RESTORABLE_REMOTES)
def restorable_world(request: pytest.FixtureRequest, engine: Engine,
                     adapters: dict[str, ConferenceAdapter]) -> World:
    """Providers where a cancelled event can be restored (cancelling an Outlook event deletes it)."""
    return World(engine, open_remote(str(request.param), request), adapters)


def with_meeting(world: World, zoom: ZoomApi, summary: str = "Design review") -> tuple[str, dict[str, Any]]:
    remote_id = world.insert(summary, description="Agenda: sketches")
    world.sync()
    record = world.create(remote_id)
    zoom.clear_log()
    return remote_id, record


def patches(zoom: ZoomApi) -> int:
    return [c["method"] for c in zoom.api_calls()].count("PATCH")


# --- every provider ------------------------------------------------------------------------------


def test_create_puts_the_meeting_on_the_event(world: World, zoom: ZoomApi) -> None:
    remote_id = world.insert("Design review")
    world.sync()
    record = world.create(remote_id)
    meeting = zoom.meeting(record["conference_id"])
    assert meeting is not None
    assert meeting["topic"] == "Design review" and meeting["duration"] == 60
    assert meeting["start_time"].startswith("2026-12-01T09:00:00")
    assert record["join_url"] and record["join_url"] in world.text(remote_id), "another client sees the join link"
    again = world.fetch(remote_id)  # calsync reads its own stamp back: the conference stays ours
    assert again is not None and again.data.conference is not None
    assert again.data.conference["provider"] == "zoom"
    assert again.data.conference["conference_id"] == record["conference_id"]
    assert again.data.conference["join_url"] == record["join_url"]
    local = local_events(world.engine, world.binding)[remote_id]
    assert local["conference"]["conference_id"] == record["conference_id"]
    assert local["title"] == "Design review"
    # the calendar is watched from now on: a channel intent where the provider can push, polling elsewhere
    assert [c["state"] for c in world.channels()] == (["intent"] if world.remote.push else [])
    # our own write-back echoing through the next sync changes nothing, and costs Zoom nothing
    zoom.clear_log()
    report = world.sync()
    assert report.inbound[0].status == "ok" and report.inbound[0].updated == 0
    assert zoom.api_calls() == []


def test_moving_the_event_moves_the_meeting(world: World, zoom: ZoomApi) -> None:
    remote_id, record = with_meeting(world, zoom)
    world.change(remote_id, at=START + timedelta(days=1, hours=2))
    report = world.sync()
    assert report.conferences.updated == 1
    meeting = zoom.meeting(record["conference_id"])
    assert meeting is not None
    assert meeting["start_time"].startswith("2026-12-02T11:00:00") and meeting["duration"] == 60
    assert patches(zoom) == 1


def test_rename_and_attendee_added_update_the_meeting(world: World, zoom: ZoomApi) -> None:
    remote_id, record = with_meeting(world, zoom)
    world.change(remote_id, title="Design review (final)")
    assert world.sync().conferences.updated == 1
    meeting = zoom.meeting(record["conference_id"])
    assert meeting is not None and meeting["topic"] == "Design review (final)"
    assert patches(zoom) == 1
    zoom.clear_log()
    world.change(remote_id, attendees=["bob@example.com"])
    report = world.sync()
    assert report.conferences.updated == 1
    assert patches(zoom) == 1
    assert world.record(remote_id)["spec"]["attendees"] == ["bob@example.com"]
    assert record["join_url"] in world.text(remote_id), "the conference stays on the event"


@pytest.mark.parametrize("how", ["delete", "cancel"])
def test_deleting_or_cancelling_the_event_deletes_the_meeting(world: World, zoom: ZoomApi, how: str) -> None:
    remote_id, record = with_meeting(world, zoom)
    getattr(world.remote, how)(remote_id, world.calendar)
    assert world.sync().conferences.deleted == 1
    assert zoom.meeting(record["conference_id"]) is None
    assert world.record(remote_id)["state"] == "deleted"


def test_a_change_the_meeting_does_not_depend_on_costs_zoom_nothing(world: World, zoom: ZoomApi) -> None:
    remote_id, _ = with_meeting(world, zoom)
    world.change(remote_id, location="Room 4")  # not a meeting field (MeetingSpec)
    report = world.sync()
    assert report.inbound[0].updated == 1
    assert report.conferences.processed == 1 and report.conferences.unchanged == 1
    assert zoom.api_calls() == []
    assert world.record(remote_id)["state"] == "active"
    assert local_events(world.engine, world.binding)[remote_id]["location"] == "Room 4"


def test_conference_removed_by_the_user_deletes_the_meeting(world: World, zoom: ZoomApi) -> None:
    remote_id, record = with_meeting(world, zoom)
    world.remote.remove_conference(remote_id, world.calendar)
    assert record["join_url"] not in world.text(remote_id)
    assert world.sync().conferences.deleted == 1
    assert zoom.meeting(record["conference_id"]) is None
    assert world.record(remote_id)["state"] == "deleted"


def test_zoom_down_delays_the_work_and_loses_none(world: World, zoom: ZoomApi, zoom_url: str) -> None:
    remote_id, record = with_meeting(world, zoom)
    admin(zoom_url, "POST", "/faults", json={"status": 503})
    world.change(remote_id, title="Renamed while Zoom is down")
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


def test_duplicate_delivery_of_one_change_is_one_update(world: World, zoom: ZoomApi) -> None:
    remote_id, _ = with_meeting(world, zoom)
    world.change(remote_id, title="Once")
    changed = world.fetch(remote_id)
    assert changed is not None and changed.data.title == "Once"
    apply_remote_changes(world.engine, world.binding, [changed])
    apply_remote_changes(world.engine, world.binding, [changed])  # the same change delivered again
    with world.engine.begin() as conn:
        pending = conn.execute(select(func.count()).select_from(conference_outbox)
                               .where(conference_outbox.c.status == "pending")).scalar_one()
    assert pending == 1
    world.sync()  # and once more through the normal listing
    world.sync()
    assert patches(zoom) == 1


def test_write_back_on_412_rereads_and_keeps_the_users_edit(world: World, zoom: ZoomApi) -> None:
    remote_id = world.insert("Planning")
    world.sync()
    world.change(remote_id, location="Room 7")  # our link's ETag is now stale
    world.remote.clear_requests()
    record = world.create(remote_id)
    statuses = [r["status"] for r in world.remote.requests() if r["method"] in ("PUT", "PATCH")]
    assert statuses and statuses[0] == 412 and 200 <= statuses[-1] < 300, statuses
    text = world.text(remote_id)
    assert "Room 7" in text, "the user's concurrent edit survives"
    assert record["join_url"] in text
    local = local_events(world.engine, world.binding)[remote_id]
    assert local["location"] == "Room 7"
    assert local["conference"]["conference_id"] == record["conference_id"]


def test_restored_event_gets_a_new_meeting(restorable_world: World, zoom: ZoomApi) -> None:
    world = restorable_world
    assert world.remote.restorable
    remote_id, record = with_meeting(world, zoom)
    world.remote.cancel(remote_id, world.calendar)
    assert world.sync().conferences.deleted == 1
    assert zoom.meeting(record["conference_id"]) is None
    world.remote.restore(remote_id, world.calendar)  # undo the cancellation
    report = world.sync()
    assert report.conferences.created == 1
    fresh = world.record(remote_id)
    assert fresh["state"] == "active" and fresh["conference_id"] != record["conference_id"]
    assert zoom.meeting(fresh["conference_id"]) is not None
    text = world.text(remote_id)
    assert fresh["join_url"] in text and record["join_url"] not in text
    again = world.fetch(remote_id)
    assert again is not None and again.data.conference is not None
    assert again.data.conference["conference_id"] == fresh["conference_id"]


def test_bad_requests_are_refused_clearly(world: World, zoom: ZoomApi) -> None:
    remote_id, _ = with_meeting(world, zoom)
    conference, pool = world.conferences()
    try:
        with pytest.raises(ConferenceWorkError, match="already has a conference"):
            conference.create(world.local_id(remote_id), "zoom")
        with pytest.raises(ConferenceWorkError, match="not configured"):
            conference.create(world.local_id(remote_id), "webhook")
        with pytest.raises(NotFound):
            conference.create("0" * 32, "zoom")
    finally:
        pool.close()
    assert zoom.api_calls() == []


def test_a_local_event_carries_its_conference_to_the_remote(world: World, zoom: ZoomApi) -> None:
    """A locally born event, not pushed yet: the conference goes out with the event's first push."""
    with world.engine.begin() as conn:
        calendar = account_store.get_binding(conn, world.binding)["calendar_id"]
    event_id = local_create(world.engine, calendar, EventData(title="Born here", start="2026-12-05T10:00:00Z",
                                                                end="2026-12-05T10:30:00Z"))
    record = world.create_for(event_id)
    assert zoom.meeting(record["conference_id"]) is not None
    report = world.sync()
    assert report.outbound and report.outbound[0].status == "ok"
    (remote_id,) = [rid for rid, row in local_events(world.engine, world.binding).items() if row["id"] == event_id]
    assert record["join_url"] in world.text(remote_id)
    again = world.fetch(remote_id)
    assert again is not None and again.data.conference is not None
    assert again.data.conference["conference_id"] == record["conference_id"]
    zoom.clear_log()
    assert world.sync().conferences.processed == 0 and zoom.api_calls() == [], "the echo is a no-op"


def test_a_create_lost_in_a_crash_is_adopted_not_made_twice(world: World, zoom: ZoomApi, zoom_url: str) -> None:
    remote_id = world.insert("Kickoff")
    world.sync()
    zoom.clear_log()
    # Zoom makes the meeting, then the answer is lost as if the worker died before recording it
    admin(zoom_url, "POST", "/faults", json={"status": 400, "count": 1, "after_commit": True,
                                             "methods": ["POST"], "path_prefix": "/v2/"})
    with pytest.raises(ConferenceError):
        world.create(remote_id)
    admin(zoom_url, "DELETE", "/faults")
    record = world.create(remote_id)
    listed = zoom.http.get("/users/me/meetings", params={"page_size": 300}).raise_for_status().json()["meetings"]
    assert [str(m["id"]) for m in listed] == [record["conference_id"]]
    assert record["join_url"] in world.text(remote_id)


def test_a_first_create_does_not_pay_for_a_lookup(world: World, zoom: ZoomApi) -> None:
    remote_id = world.insert("Kickoff")
    world.sync()
    zoom.clear_log()
    world.create(remote_id)
    assert [c["method"] for c in zoom.api_calls()] == ["POST"]


# --- notification channels -------------------------------------------------------------------------


@pytest.fixture()
def receiver() -> Iterator[RunningServer]:
    """Stands in for the service's webhook receivers: answers Graph's validation handshake, accepts
    everything else (the receivers themselves are tested in test_service.py)."""

    async def hook(request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            return PlainTextResponse(token)
        return Response(status_code=202)

    server = serve_in_thread(Starlette(routes=[Route("/webhooks/{kind}", hook, methods=["POST"])]))
    yield server
    server.stop()


def run_worker(worker: Worker, limit: int = 10) -> int:
    """Run the worker until it finds nothing due; returns how many rounds did something."""
    rounds = 0
    while rounds < limit and worker.run_once():
        rounds += 1
    assert rounds < limit, "the worker never ran out of work"
    return rounds


def poll_timer_runs_out(engine: Engine, *binding_ids: str) -> None:
    """Time passes: the bindings' poll timers are due (the slow safety-net poll)."""
    with engine.begin() as conn:
        conn.execute(update(bindings).where(bindings.c.id.in_(binding_ids))
                     .values(next_poll_at=utcnow() - timedelta(seconds=1)))


def test_each_calendar_gets_exactly_one_channel(
    engine: Engine, push_remote: Remote, adapters: dict[str, ConferenceAdapter], zoom: ZoomApi,
    receiver: RunningServer,
) -> None:
    first = World(engine, push_remote, adapters)
    second = World(engine, push_remote, adapters, calendar=push_remote.new_calendar("Team"))
    ids = [(w, w.insert(f"meeting {n}", at=START + timedelta(hours=n))) for w in (first, second) for n in range(3)]
    first.sync()
    for w, remote_id in ids:
        w.create(remote_id)
    for w in (first, second):
        assert [c["state"] for c in w.channels()] == ["intent"]
    with engine.begin() as conn:
        assert len(store.list_conferences(conn, "active")) == 6
    # the worker that holds a binding's lease turns its intent into one live channel at the provider
    worker = Worker(engine, settings=WorkerSettings(public_url=receiver.url), adapters=adapters,
                    make_provider=push_remote.make_provider())
    try:
        run_worker(worker)
        assert worker.stats.channels.created == 2 and worker.stats.channels.failed == 0
        poll_timer_runs_out(engine, first.binding, second.binding)
        assert run_worker(worker) == 2  # polled again: the live channel is kept, no second one made
    finally:
        worker.close()
    for w in (first, second):
        live = [c for c in w.channels() if c["state"] == "active"]
        assert len(live) == 1 and live[0]["resource_id"], w.channels()
        assert [c["state"] for c in w.channels() if c["state"] not in ("active", "stopped")] == []
    assert worker.stats.channels.created == 2, "no second channel for a calendar that has one"


def test_a_calendar_without_push_is_polled_not_watched(
    engine: Engine, poll_remote: Remote, adapters: dict[str, ConferenceAdapter], zoom: ZoomApi,
    receiver: RunningServer,
) -> None:
    world = World(engine, poll_remote, adapters)
    remote_id, record = with_meeting(world, zoom)
    assert world.channels() == [], "no channel intent for a provider that cannot push"
    worker = Worker(engine, settings=WorkerSettings(public_url=receiver.url, poll_interval=300), adapters=adapters,
                    make_provider=poll_remote.make_provider())
    try:
        assert run_worker(worker) == 1  # one sync, no channel attempt
        assert worker.stats.sync_errors == 0 and worker.stats.channels.failed == 0
        assert worker.stats.channels.created == 0 and world.channels() == []
        with engine.begin() as conn:
            next_poll = account_store.get_binding(conn, world.binding)["next_poll_at"]
        assert next_poll is not None and next_poll > utcnow() + timedelta(seconds=200), "the poll timer is set"
        world.change(remote_id, title="Renamed, found by polling")
        assert run_worker(worker) == 0, "not due before the poll timer runs out"
        poll_timer_runs_out(engine, world.binding)
        run_worker(worker)
        assert worker.stats.syncs == 2 and worker.stats.sync_errors == 0
    finally:
        worker.close()
    assert worker.stats.conferences.updated == 1
    meeting = zoom.meeting(record["conference_id"])
    assert meeting is not None and meeting["topic"] == "Renamed, found by polling"
    assert world.channels() == []


# --- local only (no provider involved) ---------------------------------------------------------------


def test_local_only_event_keeps_its_conference_locally(
    engine: Engine, adapters: dict[str, ConferenceAdapter], zoom: ZoomApi
) -> None:
    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "local only")
    event_id = local_create(engine, calendar, EventData(title="Local", start="2026-12-05T10:00:00Z",
                                                          end="2026-12-05T10:30:00Z"))
    pool = ProviderPool(engine)
    try:
        row = ConferenceEngine(engine, adapters, pool).create(event_id, "zoom")
    finally:
        pool.close()
    with engine.begin() as conn:
        data = event_store.event_data(conn, event_id)
        assert store.list_channels(conn) == []
    assert data.conference is not None and data.conference["conference_id"] == row["conference_id"]
    assert zoom.meeting(row["conference_id"]) is not None  # in Zoom, though no calendar carries it yet


# --- Google's own -----------------------------------------------------------------------------------


@pytest.fixture()
def google(engine: Engine, google_url: str, adapters: dict[str, ConferenceAdapter]) -> World:
    return World(engine, GoogleRemote(google_url), adapters)


def google_event(world: World, remote_id: str) -> dict[str, Any]:
    remote = world.remote
    assert isinstance(remote, GoogleRemote)
    return dict(remote.http.get(f"/calendars/{world.calendar}/events/{remote_id}",
                                params={"conferenceDataVersion": 1}).raise_for_status().json())


def test_google_shows_our_conference_as_an_add_on(google: World, zoom: ZoomApi) -> None:
    remote_id, record = with_meeting(google, zoom)
    data = google_event(google, remote_id)["conferenceData"]
    assert data["conferenceSolution"]["key"]["type"] == "addOn"
    assert data["conferenceSolution"]["name"] == google.adapters["zoom"].solution_name
    assert data["conferenceId"] == record["conference_id"]
    assert data["entryPoints"][0]["uri"] == record["join_url"]


def test_a_colour_change_costs_zoom_nothing(google: World, zoom: ZoomApi) -> None:
    remote_id, _ = with_meeting(google, zoom)
    assert isinstance(google.remote, GoogleRemote)
    google.remote.http.patch(f"/calendars/{google.calendar}/events/{remote_id}", json={"colorId": "5"}
                             ).raise_for_status()
    report = google.sync()
    assert report.inbound[0].updated == 1
    assert zoom.api_calls() == []


def test_meet_and_foreign_conferences_are_left_alone(google: World, zoom: ZoomApi, google_url: str) -> None:
    api = GoogleApi(google_url, "alice")
    meet = api.http.post(
        f"/calendars/{google.calendar}/events", params={"conferenceDataVersion": 1},
        json={"summary": "Meet call", "start": {"dateTime": START.isoformat()},
              "end": {"dateTime": (START + timedelta(hours=1)).isoformat()},
              "conferenceData": {"createRequest": {"requestId": "r1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}}},
    ).raise_for_status().json()
    api.seed(google.calendar, 6, conference_every=2)  # someone else's add-on conferences named "Zoom"
    google.sync()
    api.patch(google.calendar, meet["id"], summary="Meet call (moved)")
    api.delete(google.calendar, meet["id"])
    report = google.sync()
    assert report.conferences.processed == 0
    assert zoom.api_calls() == []
    with google.engine.begin() as conn:
        assert store.list_conferences(conn) == []


def test_an_occurrence_change_leaves_the_series_meeting_alone(
    google: World, zoom: ZoomApi, google_url: str
) -> None:
    api = GoogleApi(google_url, "alice")
    series = api.insert(
        google.calendar, "Weekly 1:1", recurrence=["RRULE:FREQ=WEEKLY;COUNT=8"],
        start={"dateTime": START.isoformat(), "timeZone": "UTC"},
        end={"dateTime": (START + timedelta(minutes=30)).isoformat(), "timeZone": "UTC"},
    )
    google.sync()
    record = google.create(series["id"])
    zoom.clear_log()
    instances = api.http.get(f"/calendars/{google.calendar}/events/{series['id']}/instances").json()["items"]
    moved = api.patch(google.calendar, instances[2]["id"], summary="Weekly 1:1 (this week only)")
    assert moved["conferenceData"]["conferenceId"] == record["conference_id"]  # the occurrence carries a copy
    google.sync()
    assert zoom.api_calls() == [], "one occurrence must not rewrite the series' meeting"
    meeting = zoom.meeting(record["conference_id"])
    assert meeting is not None and meeting["topic"] == "Weekly 1:1"
    api.patch(google.calendar, series["id"], summary="Weekly 1:1 with Bob")
    assert google.sync().conferences.updated == 1

