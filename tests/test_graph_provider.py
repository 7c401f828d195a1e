"""The Microsoft Graph provider against the Graph emulator over real HTTP, into a real SQLite store.

Graph's own ways are here (its sync token, ETags, HTML bodies, transactionId, windows, $batch reads).
What every provider does is in the shared suites, run over Graph too: incremental listing and an
expired token (test_inbound.py), a lost create answer and a 412 on push (test_twoway.py), the
Provider contract (test_provider_conformance.py)."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from calsync.engine import local
from calsync.engine.inbound import SyncResult
from calsync.engine.sync import SyncReport, sync_once
from calsync.model import Account, EventData, RemoteDeletion, RemoteEvent
from calsync.providers import SUPPORTED, provider_for
from calsync.providers.base import AuthError, ProviderError, RateLimited, SyncTokenInvalid
from calsync.providers.graph import GraphProvider, change_from_graph, event_to_graph
from calsync.providers.http import RetryPolicy
from calsync.store import accounts as account_store
from calsync.store import links as link_store
from tests.helpers import GRAPH_TEST_WINDOW, SEED_START, graph_window_params, local_events, token_of

USER = "adele"


class GraphApi:
    """Changes the remote side as some other Outlook client would (plain httpx)."""

    def __init__(self, base_url: str, token: str = USER) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=f"{base_url}/v1.0", headers={
            "Authorization": f"Bearer {token}", "Prefer": 'outlook.timezone="UTC", IdType="ImmutableId"'})

    def calendar_id(self) -> str:
        (default,) = [c for c in self.http.get("/me/calendars").raise_for_status().json()["value"]
                      if c.get("isDefaultCalendar")]
        return str(default["id"])

    def insert(self, calendar_id: str, subject: str, hour: int = 9) -> dict[str, Any]:
        body = {"subject": subject, "start": {"dateTime": f"2026-12-01T{hour:02d}:00:00", "timeZone": "UTC"},
                "end": {"dateTime": f"2026-12-01T{hour + 1:02d}:00:00", "timeZone": "UTC"}}
        return self.http.post(f"/me/calendars/{calendar_id}/events", json=body).raise_for_status().json()

    def patch(self, event_id: str, **fields: Any) -> dict[str, Any]:
        return self.http.patch(f"/me/events/{event_id}", json=fields).raise_for_status().json()

    def delete(self, event_id: str) -> None:
        self.http.delete(f"/me/events/{event_id}").raise_for_status()

    def get(self, event_id: str) -> dict[str, Any]:
        return self.http.get(f"/me/events/{event_id}").raise_for_status().json()

    def list_all(self, calendar_id: str) -> dict[str, str]:
        """Every item of the calendar's current window: id -> subject (one full delta round)."""
        params: dict[str, Any] | None = graph_window_params()
        url = f"/me/calendars/{calendar_id}/calendarView/delta"
        out: dict[str, str] = {}
        while True:
            body = self.http.get(url, params=params, headers={
                "Prefer": 'outlook.timezone="UTC", IdType="ImmutableId", odata.maxpagesize=500'}).raise_for_status().json()
            out.update({e["id"]: e.get("subject", "") for e in body["value"] if "@removed" not in e})
            if "@odata.nextLink" not in body:
                return out
            url, params = body["@odata.nextLink"], None

    def seed(self, calendar_id: str, count: int) -> None:
        body = {"count": count, "start": SEED_START, "days": 60, "seed": 7}
        httpx.post(f"{self.base_url}/emulator/calendars/{calendar_id}/seed", json=body).raise_for_status()


def admin(base_url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{base_url}/emulator{path}", **kwargs).raise_for_status()




@pytest.fixture()
def adele(graph_url: str) -> GraphApi:
    return GraphApi(graph_url)


def bind(engine: Engine, base_url: str, calendar_id: str, token: str = USER) -> str:
    with engine.begin() as conn:
        account_id = account_store.create_account(conn, "graph", token, base_url, {"token": token})
        calendar = account_store.create_calendar(conn, f"{token}:graph")
        return account_store.create_binding(conn, calendar, account_id, calendar_id, "two-way", "ask")


def make(page_size: int = 50) -> Any:
    def factory(account: Account) -> GraphProvider:
        return GraphProvider.from_account(account, page_size=page_size, window=GRAPH_TEST_WINDOW,
                                          retry=RetryPolicy(attempts=3, base_delay=0.02))
    return factory


def sync(engine: Engine, page_size: int = 50) -> SyncReport:
    return sync_once(engine, make_provider=make(page_size))


def one(results: list[SyncResult]) -> SyncResult:
    assert len(results) == 1
    return results[0]


def calendar_of(engine: Engine, binding: str) -> str:
    with engine.begin() as conn:
        return str(account_store.get_binding(conn, binding)["calendar_id"])


def assert_mirrors(engine: Engine, binding: str, api: GraphApi, calendar_id: str) -> None:
    mirrored = {rid: row["title"] for rid, row in local_events(engine, binding).items()}
    assert mirrored == api.list_all(calendar_id)


def link_of(engine: Engine, binding: str, event_id: str) -> dict[str, Any]:
    with engine.begin() as conn:
        link = link_store.link_of(conn, event_id, binding)
    assert link is not None
    return dict(link)


# --- inbound ---------------------------------------------------------------------------------


def test_provider_is_registered() -> None:
    assert "graph" in SUPPORTED
    account = Account(id="a", provider="graph", name="x", base_url="http://localhost:1", credentials={"token": "t"})
    provider = provider_for(account)
    assert isinstance(provider, GraphProvider)
    provider.close()


def test_initial_full_sync_pages_through_everything(engine: Engine, adele: GraphApi, graph_url: str) -> None:
    calendar = adele.calendar_id()
    adele.seed(calendar, 120)
    binding = bind(engine, graph_url, calendar)
    result = one(sync(engine).inbound)
    assert result.status == "ok" and result.full
    assert (result.pages, result.created) == (3, 120)
    token = token_of(engine, binding)
    assert token and "|" in token and "$deltatoken=" in token
    assert_mirrors(engine, binding, adele, calendar)
    row = next(iter(local_events(engine, binding).values()))
    assert row["start"].endswith("Z") and row["links"][0]["etag"].startswith('W/"')


def test_nothing_changed_costs_exactly_one_request(engine: Engine, adele: GraphApi, graph_url: str) -> None:
    calendar = adele.calendar_id()
    adele.seed(calendar, 120)
    bind(engine, graph_url, calendar)
    sync(engine)
    admin(graph_url, "DELETE", "/requests")
    result = one(sync(engine).inbound)
    assert result.requests == 1
    assert (result.created, result.updated, result.deleted) == (0, 0, 0)
    log = admin(graph_url, "GET", "/requests").json()["requests"]
    assert len(log) == 1 and "deltatoken" in str(log[0]).lower()


def test_a_stale_window_forces_a_rebaseline(adele: GraphApi, graph_url: str) -> None:
    calendar = adele.calendar_id()
    provider = GraphProvider(USER, graph_url)
    pages = list(provider.list_changes(calendar, None))
    token = pages[-1].sync_token
    assert token
    _start, link = token.split("|", 1)
    old = (datetime.now(UTC) - timedelta(days=45)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = provider.request_count
    with pytest.raises(SyncTokenInvalid):
        list(provider.list_changes(calendar, f"{old}|{link}"))
    assert provider.request_count == before, "re-baselining costs no request"
    with pytest.raises(SyncTokenInvalid):
        list(provider.list_changes(calendar, "not a graph token"))
    provider.close()


# --- outbound --------------------------------------------------------------------------------


def new_event(engine: Engine, calendar: str, title: str = "Planning") -> str:
    return local.create_event(engine, calendar, {
        "title": title, "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z",
        "description": "Agenda:\n1. <b> means bold", "location": "Room 4",
    }).event_id


def test_local_create_update_delete_reach_graph(engine: Engine, adele: GraphApi, graph_url: str) -> None:
    calendar = adele.calendar_id()
    binding = bind(engine, graph_url, calendar)
    sync(engine)
    event_id = new_event(engine, calendar_of(engine, binding))
    report = sync(engine)
    assert report.outbound[0].created == 1
    link = link_of(engine, binding, event_id)
    remote = adele.get(link["remote_id"])
    assert remote["subject"] == "Planning" and remote["location"]["displayName"] == "Room 4"
    assert remote["body"]["contentType"] == "html" and remote["transactionId"].split(".")[0] == event_id
    assert remote["body"]["content"] == "Agenda:<br>1. &lt;b&gt; means bold", "plain text, shown as written"
    assert remote["start"]["dateTime"].startswith("2026-12-01T09:00:00")
    assert one(sync(engine).inbound).updated == 0, "our own write echoes back as nothing"

    local.update_event(engine, event_id, {"title": "Planning (moved)"}, if_version=1)
    assert sync(engine).outbound[0].updated == 1
    assert adele.get(link["remote_id"])["subject"] == "Planning (moved)"

    local.delete_event(engine, event_id, if_version=2)
    assert sync(engine).outbound[0].deleted == 1
    assert adele.http.get(f"/me/events/{link['remote_id']}").status_code == 404
    assert adele.list_all(calendar) == {}


# --- mapping ---------------------------------------------------------------------------------


def test_mapping_of_all_day_occurrences_teams_and_own_conferences() -> None:
    occurrence = change_from_graph({
        "id": "occ", "@odata.etag": 'W/"1"', "subject": "Weekly", "isAllDay": True, "isCancelled": True,
        "seriesMasterId": "master", "originalStart": "2026-12-07T00:00:00Z",
        "start": {"dateTime": "2026-12-07T00:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-08T00:00:00.0000000", "timeZone": "UTC"},
        "onlineMeeting": {"joinUrl": "https://teams.microsoft.com/l/meetup-join/x", "conferenceId": "42"},
        "attendees": [{"type": "optional", "status": {"response": "tentativelyAccepted"},
                       "emailAddress": {"address": "ben@example.org", "name": "Ben"}}],
    })
    assert isinstance(occurrence, RemoteEvent)
    data = occurrence.data
    assert (data.start, data.end, data.all_day, data.status) == ("2026-12-07", "2026-12-08", True, "cancelled")
    assert occurrence.series_remote_id == "master" and data.original_start == "2026-12-07"  # a day, as Google and iCalendar say
    assert data.conference and data.conference["type"] == "teams" and data.conference["join_url"].endswith("/x")
    assert data.attendees[0].response == "tentative" and data.attendees[0].optional
    assert isinstance(change_from_graph({"id": "x", "@removed": {"reason": "deleted"}}), RemoteDeletion)
    assert isinstance(change_from_graph({"id": "y", "isCancelled": True}), RemoteDeletion)

    zoom = {"type": "addOn", "name": "Zoom", "join_url": "https://zoom.example/j/1", "provider": "zoom",
            "conference_id": "1"}
    body = event_to_graph(EventData(title="Call", start="2026-12-01T09:00:00Z", end="2026-12-01T10:00:00Z",
                                    description="<p>Hi</p>", conference=zoom))
    assert "https://zoom.example/j/1" in body["body"]["content"]
    back = change_from_graph({"id": "e", "subject": "Call", "body": body["body"], **{k: body[k] for k in ("start", "end")}})
    assert isinstance(back, RemoteEvent)
    assert back.data.description == "<p>Hi</p>" and back.data.conference == zoom


def test_all_day_and_zoned_events_round_trip(adele: GraphApi, graph_url: str) -> None:
    calendar = adele.calendar_id()
    provider = GraphProvider(USER, graph_url)
    try:
        for data in (
            EventData(title="Offsite", start="2026-12-03", end="2026-12-05", all_day=True),
            EventData(title="Berlin", start="2026-12-01T08:00:00Z", end="2026-12-01T09:00:00Z",
                      time_zone="Europe/Berlin", location="Mitte", description="<b>bring</b> snacks"),
        ):
            written = provider.insert_event(calendar, data)
            read = provider.get_event(calendar, written.remote_id)
            assert read is not None and read.etag == written.etag
            assert read.content_hash == data.content_hash(), (read.data, data)
        berlin = [e for e in adele.list_all(calendar).items() if e[1] == "Berlin"]
        assert adele.get(berlin[0][0])["originalStartTimeZone"] == "Europe/Berlin"
    finally:
        provider.close()


def test_outlook_html_bodies_are_plain_text_here_and_keep_their_formatting_there(
    engine: Engine, adele: GraphApi, graph_url: str
) -> None:
    """Outlook keeps bodies as HTML documents; calsync's description (which travels to Google, CalDAV
    and meeting agendas) is the text a reader sees, and an edit elsewhere leaves the formatting alone."""
    calendar = adele.calendar_id()
    markup = ("<html><head><style>p {color: red}</style></head><body><p>Agenda</p>"
              "<ul><li><b>budget</b> &amp; hiring</li><li>offsite</li></ul></body></html>")
    made = adele.http.post(f"/me/calendars/{calendar}/events", json={
        "subject": "Board", "body": {"contentType": "html", "content": markup},
        "start": {"dateTime": "2026-12-02T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-02T10:00:00", "timeZone": "UTC"}}).raise_for_status().json()
    binding = bind(engine, graph_url, calendar)
    sync(engine)
    row = local_events(engine, binding)[made["id"]]
    assert row["description"] == "Agenda\nbudget & hiring\noffsite"

    local.update_event(engine, row["id"], {"title": "Board (moved)"}, if_version=row["version"])
    sync(engine)
    assert adele.get(made["id"])["body"]["content"] == markup, "the formatting was not rewritten"
    assert one(sync(engine).inbound).updated == 0

    local.update_event(engine, row["id"], {"description": "Agenda\nbudget only"}, if_version=row["version"] + 1)
    sync(engine)
    assert adele.get(made["id"])["body"]["content"] == "Agenda<br>budget only"
    assert one(sync(engine).inbound).updated == 0, "our own write reads back as the same text"


# --- reading by id: fetch_events over JSON batches ---------------------------------------------


@pytest.fixture()
def reader(graph_url: str) -> Any:
    provider = GraphProvider(USER, graph_url, window=GRAPH_TEST_WINDOW, retry=RetryPolicy(attempts=3, base_delay=0.01))
    yield provider
    provider.close()


def batches(graph_url: str) -> list[list[tuple[str, int]]]:
    """The emulator's log as batches: per outer POST /$batch, its inner requests' (path, status)."""
    out: list[list[tuple[str, int]]] = []
    inner: list[tuple[str, int]] = []
    for entry in admin(graph_url, "GET", "/requests").json()["requests"]:
        if "batch_item" in entry:
            inner.append((entry["path"].rsplit("/", 1)[-1], entry["status"]))
        elif entry["path"] == "/v1.0/$batch":
            out.append(inner)
            inner = []
    return out


def test_listing_window_is_the_window_a_fresh_listing_covers(reader: GraphProvider) -> None:
    start, end = reader.listing_window() or (None, None)
    now = datetime.now(UTC)
    assert start is not None and end is not None
    assert abs(start - (now + GRAPH_TEST_WINDOW[0])) < timedelta(seconds=5)
    assert abs(end - (now + timedelta(days=365))) < timedelta(seconds=5)


def test_fetch_events_reads_found_and_deleted_ids_in_one_batch(adele: GraphApi, graph_url: str,
                                                               reader: GraphProvider) -> None:
    calendar = adele.calendar_id()
    kept, gone = adele.insert(calendar, "kept"), adele.insert(calendar, "gone", hour=11)
    adele.delete(gone["id"])
    admin(graph_url, "DELETE", "/requests")
    found = reader.fetch_events(calendar, [kept["id"], gone["id"], kept["id"]])
    assert reader.request_count == 1
    assert batches(graph_url) == [[(kept["id"], 200), (gone["id"], 404)]], "one GET per distinct id"
    assert found == {kept["id"]: reader.get_event(calendar, kept["id"]), gone["id"]: None}
    event = found[kept["id"]]
    assert event is not None and event.data.title == "kept" and event.data.start == "2026-12-01T09:00:00Z"
    assert reader.fetch_events(calendar, []) == {}


def test_fetch_events_gives_a_series_master_with_its_exdates(adele: GraphApi, graph_url: str,
                                                            reader: GraphProvider) -> None:
    calendar = adele.calendar_id()
    day = datetime.now(UTC).date() + timedelta(days=10)
    monday = day + timedelta(days=-day.weekday() % 7)
    start = datetime(monday.year, monday.month, monday.day, 9, tzinfo=UTC)
    skipped = (start + timedelta(days=7)).strftime("%Y%m%dT%H%M%SZ")
    data = EventData(title="Weekly", start=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     end=(start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), time_zone="UTC",
                     recurrence=["RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=MO", f"EXDATE:{skipped}"])
    master = reader.insert_event(calendar, data)
    found = reader.fetch_events(calendar, [master.remote_id])
    got = reader.get_event(calendar, master.remote_id)
    assert set(found) == {master.remote_id}
    event = found[master.remote_id]
    assert event is not None and got is not None
    # the same event; the window its EXDATEs are known in is reckoned from the clock at each read, and
    # the two reads may fall either side of a second (a loaded CI machine saw it)
    assert replace(event, exdates_known=None) == replace(got, exdates_known=None)
    assert event.exdates_known is not None and got.exdates_known is not None
    assert all(abs(a - b) <= timedelta(seconds=5) for a, b in zip(event.exdates_known, got.exdates_known, strict=True))
    assert any(line.startswith("EXDATE") and skipped in line for line in event.data.recurrence)


def test_fetch_events_sends_more_than_20_ids_in_batches_of_20(adele: GraphApi, graph_url: str,
                                                              reader: GraphProvider) -> None:
    calendar = adele.calendar_id()
    adele.seed(calendar, 45)
    ids = sorted(adele.list_all(calendar))
    assert len(ids) >= 41
    admin(graph_url, "DELETE", "/requests")
    found = reader.fetch_events(calendar, ids)
    assert set(found) == set(ids) and all(found[i] is not None for i in ids)
    assert [len(b) for b in batches(graph_url)] == [min(20, len(ids) - at) for at in range(0, len(ids), 20)]
    assert reader.request_count == -(-len(ids) // 20)


@pytest.mark.parametrize("status", [429, 503, 504])
def test_fetch_events_retries_throttled_items_in_a_later_batch(adele: GraphApi, graph_url: str,
                                                               reader: GraphProvider, status: int) -> None:
    calendar = adele.calendar_id()
    made = [adele.insert(calendar, f"e{n}", hour=8 + n)["id"] for n in range(3)]
    admin(graph_url, "DELETE", "/requests")
    admin(graph_url, "POST", "/faults", json={"status": status, "retry_after": 0, "count": 2, "methods": ["GET"]})
    found = reader.fetch_events(calendar, made)
    assert all(found[i] is not None for i in made)
    assert [[s for _, s in b] for b in batches(graph_url)] == [[status, status, 200], [200, 200]]


def test_fetch_events_raises_rate_limited_when_items_stay_throttled(adele: GraphApi, graph_url: str,
                                                                    reader: GraphProvider) -> None:
    calendar = adele.calendar_id()
    made = adele.insert(calendar, "busy")["id"]
    admin(graph_url, "DELETE", "/requests")
    admin(graph_url, "POST", "/faults", json={"status": 429, "retry_after": 0, "methods": ["GET"]})
    with pytest.raises(RateLimited) as caught:
        reader.fetch_events(calendar, [made])
    assert caught.value.status == 429
    assert len(batches(graph_url)) == 3, "policy.attempts rounds, then up"
    admin(graph_url, "DELETE", "/faults")
    admin(graph_url, "POST", "/faults", json={"status": 429, "retry_after": 60, "methods": ["GET"]})
    with pytest.raises(RateLimited) as caught:
        reader.fetch_events(calendar, [made])
    assert caught.value.retry_after == 60, "a long Retry-After goes up to the scheduler at once"


@pytest.mark.parametrize(("status", "error"), [(500, RateLimited), (401, AuthError), (403, ProviderError),
                                               (400, ProviderError)])
def test_fetch_events_never_reads_a_failure_as_a_deletion(adele: GraphApi, graph_url: str, reader: GraphProvider,
                                                          status: int, error: type[Exception]) -> None:
    calendar = adele.calendar_id()
    fine, failing = adele.insert(calendar, "fine")["id"], adele.insert(calendar, "failing", hour=11)["id"]
    admin(graph_url, "POST", "/faults", json={"status": status, "methods": ["GET"],
                                              "path_prefix": f"/v1.0/me/events/{failing}"})
    with pytest.raises(error):
        reader.fetch_events(calendar, [fine, failing])


def test_fetch_events_refuses_a_malformed_batch_answer(adele: GraphApi, graph_url: str) -> None:
    calendar = adele.calendar_id()
    made = adele.insert(calendar, "x")["id"]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"responses": [{"id": "0", "status": 200, "body": {"subject": "no id"}}]})

    def empty(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"responses": []})

    for transport in (answer, empty):  # an event without an id; a request left unanswered
        provider = GraphProvider(USER, graph_url, retry=RetryPolicy(attempts=1))
        provider.http._client.close()
        provider.http._client = httpx.Client(base_url=f"{graph_url}/v1.0", transport=httpx.MockTransport(transport))
        try:
            with pytest.raises(ProviderError):
                provider.fetch_events(calendar, [made])
        finally:
            provider.close()


def test_a_listing_reads_the_masters_a_page_meets_in_batches_of_20(engine: Engine, adele: GraphApi,
                                                                    graph_url: str) -> None:
    """The series masters a delta page meets for the first time are read together, in JSON batches
    of 20 GETs, not one request each: 60 series over two pages cost at most two batches a page."""
    calendar = adele.calendar_id()
    httpx.post(f"{graph_url}/emulator/calendars/{calendar}/seed",
               json={"count": 120, "start": SEED_START, "days": 60, "seed": 7, "recurring_every": 2}).raise_for_status()
    binding = bind(engine, graph_url, calendar)
    admin(graph_url, "DELETE", "/requests")
    result = one(sync(engine, page_size=500).inbound)
    assert result.status == "ok" and result.full
    log = admin(graph_url, "GET", "/requests").json()["requests"]
    outer = [e for e in log if "batch_item" not in e]
    single_reads = [e for e in outer if e["method"] == "GET" and "/events/" in e["path"]]
    masters = [e for e in log if "batch_item" in e]
    assert single_reads == [] and len(masters) == 60, (len(single_reads), len(masters))
    assert sum(e["path"] == "/v1.0/$batch" for e in outer) <= 2 * result.pages
    assert result.requests == len(outer)
    series = [e for e in local_events(engine, binding).values() if e["recurrence"]]
    assert len(series) == 60
