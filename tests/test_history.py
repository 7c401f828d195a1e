"""Per-event history and restore (engine/history.py, service/history_routes.py) over the REST API,
for every provider of the shared suite (Google and Graph emulators, Radicale and Xandikos): each
version with its author and side (local, or the binding with the copy's ETag), a restore that reaches
the provider, a conflict opened and resolved in the history; then the errors, the authors of the other
callers (the web page's user, an admin acting for a user, the CLI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from calsync.cli import app as cli_app
from calsync.emulators.server import serve_in_thread
from calsync.engine import history, local
from calsync.engine.sync import SyncReport, sync_once
from calsync.service.app import create_app
from calsync.store import accounts as account_store
from calsync.store import links as link_store
from calsync.store import users
from calsync.store.db import open_engine
from calsync.store.journal import Author
from tests.helpers import migrated_sqlite
from tests.remotes import Remote

SLOT = {"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"}


def sync(engine: Engine, remote: Remote) -> SyncReport:
    return sync_once(engine, make_provider=remote.make_provider())


@pytest.fixture()
def api(engine: Engine) -> Iterator[httpx.Client]:
    """/api/v1 of a service over `engine`, with a write key named deploy-bot of the default user."""
    with engine.begin() as conn:
        key = users.create_api_key(conn, users.default_owner(conn), "write", "deploy-bot")[1]
    server = serve_in_thread(create_app(engine))
    with httpx.Client(
        base_url=f"{server.url}/api/v1", timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        yield client
    server.stop()


def calendar_of(engine: Engine, binding: str) -> str:
    with engine.begin() as conn:
        return str(account_store.get_binding(conn, binding)["calendar_id"])


def link_of(engine: Engine, binding: str, event_id: str) -> dict[str, Any]:
    with engine.begin() as conn:
        found = link_store.link_of(conn, event_id, binding)
    assert found is not None, "the event has no copy there"
    return dict(found)


def entries(api: httpx.Client, event_id: str) -> list[dict[str, Any]]:
    answer = api.get(f"/events/{event_id}/history")
    assert answer.status_code == 200, answer.text
    assert answer.json()["event_id"] == event_id
    return list(answer.json()["entries"])


def patch(api: httpx.Client, event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    answer = api.patch(f"/events/{event['id']}", json=changes, headers={"If-Match": event["etag"]})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_history_lists_each_version_with_its_author_and_side(engine: Engine, remote: Remote, api: httpx.Client) -> None:
    binding = remote.bind(engine)
    sync(engine, remote)
    made = api.post("/events", json={"calendar_id": calendar_of(engine, binding), "title": "Planning", **SLOT})
    assert made.status_code == 201, made.text
    event = made.json()
    sync(engine, remote)
    event = patch(api, event, title="Planning (room 4)")
    sync(engine, remote)
    remote.change(link_of(engine, binding, event["id"])["remote_id"], title="Planning (moved to room 5)")
    sync(engine, remote)

    newest, edited, created = entries(api, event["id"])  # newest first
    assert (created["version"], created["kind"], created["side"], created["author"]) == (
        1,
        "created",
        "local",
        "api key deploy-bot",
    )
    assert (edited["version"], edited["kind"], edited["side"], edited["author"]) == (
        2,
        "updated",
        "local",
        "api key deploy-bot",
    )
    assert edited["changes"] == {"title": {"from": "Planning", "to": "Planning (room 4)"}}
    assert edited["remote_etag"] is None
    assert (newest["version"], newest["kind"], newest["side"]) == (3, "updated", binding)
    assert newest["author"] == f"{remote.kind} binding {binding}"
    assert newest["changes"]["title"] == {"from": "Planning (room 4)", "to": "Planning (moved to room 5)"}
    assert newest["remote_etag"] and newest["remote_etag"] == link_of(engine, binding, event["id"])["etag"]
    for entry in (newest, edited, created):
        assert entry["event_id"] == event["id"] and entry["at"].endswith("Z")
        assert datetime.fromisoformat(entry["at"]) <= datetime.now(UTC)


def test_a_restored_version_reaches_the_provider(engine: Engine, remote: Remote, api: httpx.Client) -> None:
    binding = remote.bind(engine)
    sync(engine, remote)
    event = api.post(
        "/events", json={"calendar_id": calendar_of(engine, binding), "title": "Retro", "location": "Room 1", **SLOT}
    ).json()
    sync(engine, remote)
    event = patch(
        api,
        event,
        title="Retro (cancelled?)",
        location="Room 9",
        start="2026-12-01T11:00:00Z",
        end="2026-12-01T12:00:00Z",
    )
    sync(engine, remote)
    remote_id = link_of(engine, binding, event["id"])["remote_id"]
    assert remote.titles()[remote_id] == "Retro (cancelled?)"

    restored = api.post(f"/events/{event['id']}/restore", json={"version": 1}, headers={"If-Match": event["etag"]})
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert (body["version"], body["title"], body["location"], body["start"]) == (
        3,
        "Retro",
        "Room 1",
        "2026-12-01T09:00:00Z",
    )
    assert restored.headers["ETag"] == body["etag"]
    report = sync(engine, remote)
    assert report.outbound[0].updated == 1
    assert remote.titles()[remote_id] == "Retro"
    text = remote.text_of(remote_id)
    assert "Room 1" in text and "Room 9" not in text
    assert link_of(engine, binding, event["id"])["base_version"] == 3

    newest = entries(api, event["id"])[0]
    assert (newest["version"], newest["kind"], newest["side"], newest["author"], newest["restored_from"]) == (
        3,
        "updated",
        "local",
        "api key deploy-bot",
        1,
    )
    assert newest["changes"]["title"] == {"from": "Retro (cancelled?)", "to": "Retro"}
    assert "restored_from:1" not in newest["fields"]


def test_a_deleted_event_restored_is_made_again_on_the_provider(
    engine: Engine, remote: Remote, api: httpx.Client
) -> None:
    binding = remote.bind(engine)
    sync(engine, remote)
    event = api.post("/events", json={"calendar_id": calendar_of(engine, binding), "title": "Offsite", **SLOT}).json()
    sync(engine, remote)
    assert list(remote.titles().values()) == ["Offsite"]
    assert api.delete(f"/events/{event['id']}", headers={"If-Match": event["etag"]}).status_code == 204
    sync(engine, remote)
    assert remote.titles() == {}

    back = api.post(f"/events/{event['id']}/restore", json={"version": 1}, headers={"If-Match": "*"})
    assert back.status_code == 200, back.text
    assert (back.json()["version"], back.json()["title"], back.json()["deleted"]) == (3, "Offsite", False)
    report = sync(engine, remote)
    assert report.outbound[0].failed == 0
    assert list(remote.titles().values()) == ["Offsite"], "made again there, once"
    assert [e["id"] for e in api.get("/events").json()["events"]] == [event["id"]], "and once here"
    assert link_of(engine, binding, event["id"])["base_version"] == 3
    again = sync(engine, remote)  # the copy's echo changes nothing and opens nothing
    assert not api.get("/conflicts").json()["conflicts"]
    assert api.get(f"/events/{event['id']}").json()["version"] == 3
    assert again.outbound[0].failed == 0
    newest = entries(api, event["id"])[0]
    assert (newest["kind"], newest["side"], newest["restored_from"]) == ("undeleted", "local", 1)


def test_a_conflict_opened_and_resolved_is_in_the_history(engine: Engine, remote: Remote, api: httpx.Client) -> None:
    remote_id = remote.insert("Budget review")
    binding = remote.bind(engine, policy="ask")
    sync(engine, remote)
    event = next(e for e in api.get("/events").json()["events"] if e["title"] == "Budget review")
    patch(api, event, title="Budget review (here)")
    remote.change(remote_id, title="Budget review (there)")
    sync(engine, remote)
    (conflict,) = api.get("/conflicts").json()["conflicts"]
    resolved = api.post(f"/conflicts/{conflict['id']}/resolve", json={"keep": "local"})
    assert resolved.status_code == 200, resolved.text
    sync(engine, remote)
    assert remote.titles()[remote_id] == "Budget review (here)"

    found = entries(api, event["id"])
    kinds = [(e["kind"], e["side"], e["author"]) for e in found]
    assert ("conflict-opened", binding, f"{remote.kind} binding {binding}") in kinds
    assert ("conflict-resolved", "local", "api key deploy-bot") in kinds
    opened = next(e for e in found if e["kind"] == "conflict-opened")
    closed = next(e for e in found if e["kind"] == "conflict-resolved")
    assert opened["conflict_id"] == closed["conflict_id"] == conflict["id"]
    assert "resolution:local" in closed["fields"]
    assert kinds.index(("conflict-resolved", "local", "api key deploy-bot")) < kinds.index(
        ("conflict-opened", binding, f"{remote.kind} binding {binding}")
    )  # newest first


# --- the errors and the other callers (no provider needed) ---------------------------------------------


@pytest.fixture()
def calendar(engine: Engine) -> str:
    with engine.begin() as conn:
        return account_store.create_calendar(conn, "Team")


def test_restore_answers_noop_stale_unknown_version_and_deleted(
    engine: Engine, api: httpx.Client, calendar: str
) -> None:
    event = api.post("/events", json={"calendar_id": calendar, "title": "One", **SLOT}).json()
    event = patch(api, event, title="Two")
    url = f"/events/{event['id']}/restore"
    # the current content again: nothing written, the event as it is
    same = api.post(url, json={"version": 2}, headers={"If-Match": event["etag"]})
    assert same.status_code == 200 and same.json()["version"] == 2
    assert len(entries(api, event["id"])) == 2
    assert api.post(url, json={"version": 1}).status_code == 428
    stale = api.post(url, json={"version": 1}, headers={"If-Match": f'"1-{event["id"][:8]}"'})
    assert stale.status_code == 412 and stale.json()["detail"]["version"] == 2
    missing = api.post(url, json={"version": 7}, headers={"If-Match": "*"})
    assert missing.status_code == 404 and "version 7" in missing.json()["detail"]
    assert "versions kept: 1 to 2" in missing.json()["detail"]
    assert api.post(url, json={"version": 0}, headers={"If-Match": "*"}).status_code == 422
    assert api.post(url, json={"version": "1"}, headers={"If-Match": "*"}).status_code == 422
    # a restore of v1, then of v2 again: each is a new version
    assert api.post(url, json={"version": 1}, headers={"If-Match": "*"}).json()["title"] == "One"
    again = api.post(url, json={"version": 2}, headers={"If-Match": "*"}).json()
    assert (again["title"], again["version"]) == ("Two", 4)
    # deleted: history stays readable, and a restore brings the event back (the API's 404 until then)
    assert api.delete(f"/events/{event['id']}", headers={"If-Match": "*"}).status_code == 204
    assert api.get(f"/events/{event['id']}").status_code == 404
    stale_deleted = api.post(url, json={"version": 1}, headers={"If-Match": f'"4-{event["id"][:8]}"'})
    assert stale_deleted.status_code == 412
    back = api.post(url, json={"version": 1}, headers={"If-Match": f'"5-{event["id"][:8]}"'})
    assert back.status_code == 200 and (back.json()["version"], back.json()["title"]) == (6, "One")
    assert not back.json()["deleted"]
    found = entries(api, event["id"])
    assert [e["kind"] for e in found] == ["undeleted", "deleted", "updated", "updated", "updated", "created"]
    assert [e["restored_from"] for e in found] == [1, None, 2, 1, None, None]
    assert api.get(f"/events/{'0' * 32}/history").status_code == 404
    assert api.get(f"/events/{event['id']}/history", params={"cursor": "x"}).status_code == 422


def test_history_pages_newest_first(engine: Engine, api: httpx.Client, calendar: str) -> None:
    event = api.post("/events", json={"calendar_id": calendar, "title": "t0", **SLOT}).json()
    for n in range(1, 8):
        event = patch(api, event, title=f"t{n}")
    seen: list[int] = []
    cursor = None
    while True:
        page = api.get(f"/events/{event['id']}/history", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        seen += [e["version"] for e in page.json()["entries"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [8, 7, 6, 5, 4, 3, 2, 1]


def test_the_web_user_and_an_admin_acting_for_a_user_are_named(tmp_path: Path) -> None:
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    with engine.begin() as conn:
        ada = users.create_user(conn, "ada")
        ops = users.create_user(conn, "ops", is_admin=True)
        admin_key = users.create_api_key(conn, ops, "admin", "backend")[1]
        unnamed = users.create_api_key(conn, ada, "write")
        calendar = account_store.create_calendar(conn, "Ada's", user_id=ada)
    server = serve_in_thread(create_app(engine, open_page_user=ada))
    try:
        base = f"{server.url}/api/v1"
        page = httpx.post(f"{base}/events", json={"calendar_id": calendar, "title": "from the page", **SLOT})
        assert page.status_code == 201, page.text
        acting = {"Authorization": f"Bearer {admin_key}", "X-Calsync-User": "ada"}
        event = page.json()
        edited = httpx.patch(
            f"{base}/events/{event['id']}", json={"title": "by ops"}, headers={**acting, "If-Match": event["etag"]}
        )
        assert edited.status_code == 200, edited.text
        by_key = httpx.patch(
            f"{base}/events/{event['id']}",
            json={"title": "by a key"},
            headers={"Authorization": f"Bearer {unnamed[1]}", "If-Match": "*"},
        )
        assert by_key.status_code == 200
        with engine.begin() as conn:  # logged in to the page: ada herself, and ops acting for her
            from calsync.store import sessions

            ada_session, ada_state = sessions.create_session(conn, ada)
            ops_session, ops_state = sessions.create_session(conn, ops)
        for session_id, csrf, extra, title in (
            (ada_session, ada_state.csrf_token, {}, "by ada's session"),
            (ops_session, ops_state.csrf_token, {"X-Calsync-User": "ada"}, "by ops' session"),
        ):
            with httpx.Client(base_url=base, cookies={"calsync_session": session_id}) as client:
                answer = client.patch(
                    f"/events/{event['id']}",
                    json={"title": title},
                    headers={"X-CSRF-Token": csrf, "If-Match": "*", **extra},
                )
                assert answer.status_code == 200, answer.text
        found = httpx.get(f"{base}/events/{event['id']}/history").json()["entries"]
        assert [e["author"] for e in found] == [
            "admin ops for ada",
            "web user ada",
            f"api key {unnamed[1][:12]}",
            "admin ops for ada via api key backend",
            "web user ada",
        ]
    finally:
        server.stop()
        engine.dispose()


def test_the_cli_shows_history_and_restores_as_the_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calsync.db'}"
    engine = open_engine(url)
    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "Team")
    someone = Author("local", "api key deploy-bot")
    event = local.create_event(engine, calendar, {"title": "Kick-off", **SLOT}, author=someone).event_id
    local.update_event(engine, event, {"title": "Kick-off (moved)"}, None, author=someone)
    engine.dispose()
    runner = CliRunner()
    done = runner.invoke(cli_app, ["events", "restore", event, "--version", "1", "--db", url])
    assert done.exit_code == 0, done.output
    assert "version 3" in done.output
    shown = runner.invoke(cli_app, ["events", "history", event, "--db", url, "--json"])
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.output)
    assert [(e["version"], e["author"], e["restored_from"]) for e in listed] == [
        (1, "api key deploy-bot", None),
        (2, "api key deploy-bot", None),
        (3, "cli", 1),
    ]
    refused = runner.invoke(cli_app, ["events", "restore", event, "--version", "9", "--db", url])
    assert refused.exit_code == 1 and "not in its kept" in " ".join(refused.output.split())
    engine = open_engine(url)
    assert history.kept_versions(engine, event) == [1, 2, 3]
    engine.dispose()


def test_restore_writes_a_new_version_queued_for_every_binding_on_both_backends(db_url: str) -> None:
    """The engine's restore on SQLite and PostgreSQL: the new version, its outbox rows, the journal row."""
    from calsync.store import outbox as outbox_store

    engine = open_engine(db_url)
    try:
        with engine.begin() as conn:
            calendar = account_store.create_calendar(conn, "Team")
        bot = Author("local", "api key deploy-bot")
        event = local.create_event(engine, calendar, {"title": "a", "attendees": ["x@example.com"], **SLOT},
                                   author=bot).event_id
        local.update_event(engine, event, {"title": "b", "attendees": ["x@example.com", "y@example.com"]}, None,
                           author=bot)
        local.update_event(engine, event, {"start": "2026-12-02T09:00:00Z", "end": "2026-12-02T10:00:00Z"}, None,
                           author=bot)
        done = history.restore(engine, event, 1, author=Author("local", "cli"), if_version=3)
        assert (done.version, done.changed) == (4, True)
        with pytest.raises(local.StaleVersion):
            history.restore(engine, event, 2, author=bot, if_version=3)
        assert not history.restore(engine, event, 1, author=bot).changed  # v4 is v1's content
        with engine.begin() as conn:
            from calsync.store import events as event_store

            (row,) = event_store.get_events(conn, [event])
            assert outbox_store.backlog(conn) == 0  # no binding: nothing queued, and nothing failed
        assert (row["title"], row["start"], [a["email"] for a in row["attendees"]]) == (
            "a", "2026-12-01T09:00:00Z", ["x@example.com"])
        newest = history.entries(engine, event)[-1]
        assert (newest["version"], newest["author"], newest["restored_from"]) == (4, "cli", 1)
        assert set(newest["changes"]) == {"title", "start", "end", "attendees"}
    finally:
        engine.dispose()


def test_a_deleted_series_is_not_restored(engine: Engine, api: httpx.Client, calendar: str) -> None:
    from calsync.model import EventData
    from tests.helpers import local_create

    series = local_create(engine, calendar, EventData(
        title="Weekly", start=SLOT["start"], end=SLOT["end"], recurrence=["RRULE:FREQ=WEEKLY;COUNT=5"]))
    local.delete_event(engine, series, None)
    refused = api.post(f"/events/{series}/restore", json={"version": 1}, headers={"If-Match": "*"})
    assert refused.status_code == 409 and "recurring series" in refused.json()["detail"]
    assert [e["kind"] for e in entries(api, series)] == ["deleted", "created"]


def test_a_conflict_resolved_from_the_cli_is_the_clis(tmp_path: Path, google_url: str) -> None:
    from tests.remotes import GoogleRemote

    url = f"sqlite:///{tmp_path / 'calsync.db'}"
    engine = open_engine(url)
    remote = GoogleRemote(google_url)
    remote_id = remote.insert("Standup")
    binding = remote.bind(engine, policy="ask")
    sync(engine, remote)
    (event,) = local_events_of(engine, binding)
    local.update_event(engine, event, {"title": "Standup (here)"}, None)
    remote.change(remote_id, title="Standup (there)")
    sync(engine, remote)
    with engine.begin() as conn:
        from calsync.store import conflicts as conflict_store

        (conflict,) = conflict_store.list_conflicts(conn)
    engine.dispose()
    done = CliRunner().invoke(cli_app, ["conflicts", "resolve", conflict["id"], "--keep", "remote", "--db", url])
    assert done.exit_code == 0, done.output
    engine = open_engine(url)
    try:
        found = history.entries(engine, event)
        resolved = next(e for e in found if e["kind"] == "conflict-resolved")
        assert (resolved["side"], resolved["author"], resolved["conflict_id"]) == ("local", "cli", conflict["id"])
        assert found[-1]["changes"]["title"] == {"from": "Standup (here)", "to": "Standup (there)"}
    finally:
        engine.dispose()


def local_events_of(engine: Engine, binding: str) -> list[str]:
    from tests.helpers import local_events

    return [row["id"] for row in local_events(engine, binding).values()]
