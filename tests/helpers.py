"""Test helpers: another Google client (plain httpx against the emulator) and store shortcuts."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select

from calsync.model import EventData
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.store.common import new_id
from calsync.store.schema import bindings, events

# Seeded calendars start a few days before today: Graph lists a window around *now* (30 days back by
# default), so a fixed date would slowly fall out of it and the seeded counts would shrink.
SEED_START = (datetime.now(UTC) - timedelta(days=5)).strftime("%Y-%m-%dT00:00:00Z")

# Tests also write on fixed dates (late 2026). Graph providers in tests list a window that starts at a
# fixed day before those instead of 30 days back from now, so the dates never fall out of it.
GRAPH_WINDOW_START = datetime(2026, 10, 1, tzinfo=UTC)
GRAPH_TEST_WINDOW = (GRAPH_WINDOW_START - datetime.now(UTC), timedelta(days=365))


_TEMPLATE: dict[str, str] = {}


def migrated_sqlite(path: Path) -> str:
    """A SQLite URL of a new store file at `path`, migrated to the head: a copy of a template the
    process migrated once (open_engine on it finds the head and migrates nothing). Migrating each
    test's store took a tenth of a second a test; the migrations themselves are tested on their own
    (tests/test_store.py opens new and old files with open_engine)."""
    import atexit
    import shutil
    import tempfile

    from calsync.store.db import SCHEMA_HEAD, open_engine, stored_revision

    if "file" not in _TEMPLATE:
        folder = tempfile.mkdtemp(prefix="calsync-template-")
        atexit.register(shutil.rmtree, folder, True)
        template = Path(folder) / "template.db"
        engine = open_engine(f"sqlite:///{template}")
        assert stored_revision(engine) == SCHEMA_HEAD
        with engine.connect() as conn:  # everything in the main file: the copy needs no -wal beside it
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        _TEMPLATE["file"] = str(template)
    shutil.copyfile(_TEMPLATE["file"], path)
    return f"sqlite:///{path}"


def graph_window_params() -> dict[str, str]:
    """startDateTime / endDateTime of GRAPH_TEST_WINDOW, for listing a calendar as the tests' provider sees it."""
    now = datetime.now(UTC)
    return {"startDateTime": GRAPH_WINDOW_START.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endDateTime": (now + GRAPH_TEST_WINDOW[1]).strftime("%Y-%m-%dT%H:%M:%SZ")}


class GoogleApi:
    """Changes the remote side as some other Google Calendar client would."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=f"{base_url}/calendar/v3", headers={"Authorization": f"Bearer {token}"})

    def primary_id(self) -> str:
        return self.http.get("/calendars/primary").raise_for_status().json()["id"]

    def create_calendar(self, summary: str) -> str:
        return self.http.post("/calendars", json={"summary": summary}).raise_for_status().json()["id"]

    def insert(self, calendar_id: str, summary: str, at: datetime | None = None, **fields: Any) -> dict[str, Any]:
        """Insert an event; `at` gives a one-hour slot unless `fields` carry their own start/end."""
        start = at or datetime(2026, 12, 1, 9, tzinfo=UTC)
        body = {
            "summary": summary, "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()}, **fields,
        }
        return self.http.post(f"/calendars/{calendar_id}/events", json=body).raise_for_status().json()

    def patch(self, calendar_id: str, event_id: str, **fields: Any) -> dict[str, Any]:
        return self.http.patch(f"/calendars/{calendar_id}/events/{event_id}", json=fields).raise_for_status().json()

    def delete(self, calendar_id: str, event_id: str) -> None:
        self.http.delete(f"/calendars/{calendar_id}/events/{event_id}").raise_for_status()

    def list_all(self, calendar_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"maxResults": 2500}
        while True:
            body = self.http.get(f"/calendars/{calendar_id}/events", params=params).raise_for_status().json()
            items.extend(body["items"])
            if "nextPageToken" not in body:
                return items
            params["pageToken"] = body["nextPageToken"]

    def seed(self, calendar_id: str, count: int, **options: Any) -> None:
        body = {"count": count, "start": SEED_START, "days": 60, "seed": 7, **options}
        httpx.post(f"{self.base_url}/emulator/calendars/{calendar_id}/seed", json=body).raise_for_status()


def admin(base_url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{base_url}/emulator{path}", **kwargs).raise_for_status()


def bind(engine: Engine, base_url: str, token: str, calendar_id: str, **options: Any) -> str:
    """An account (reused per token) and a binding of `calendar_id` to a new local calendar."""
    with engine.begin() as conn:
        existing = [a for a in account_store.list_accounts(conn) if a["name"] == token]
        account_id = existing[0]["id"] if existing else account_store.create_account(
            conn, "google", token, base_url, {"token": token})
        calendar = account_store.create_calendar(conn, f"{token}:{calendar_id}")
        return account_store.create_binding(conn, calendar, account_id, calendar_id,
                                            options.get("direction", "two-way"), options.get("policy", "ask"))


def local_events(engine: Engine, binding_id: str, include_deleted: bool = False) -> dict[str, dict[str, Any]]:
    """The binding's events keyed by remote id (asserting no remote id maps to two events)."""
    with engine.begin() as conn:
        calendar_id = account_store.get_binding(conn, binding_id)["calendar_id"]
        rows = event_store.list_events(conn, calendar_id=calendar_id, include_deleted=include_deleted)
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        for link in row["links"]:
            if link["binding_id"] == binding_id:
                assert link["remote_id"] not in out, f"duplicate local event for {link['remote_id']}"
                out[link["remote_id"]] = row
    return out


def token_of(engine: Engine, binding_id: str) -> str | None:
    with engine.begin() as conn:
        return conn.execute(select(bindings.c.sync_token).where(bindings.c.id == binding_id)).scalar()


def local_edit(engine: Engine, event_id: str, **changes: Any) -> None:
    """A local edit as the store records it (what the REST API does too): content + version."""
    with engine.begin() as conn:
        row = conn.execute(select(events).where(events.c.id == event_id)).mappings().one()
        data = event_store.row_to_data(row)
        for key, value in changes.items():
            setattr(data, key, value)
        assert event_store.save_local_event(conn, event_id, data, row["version"] + 1)


def event_data(engine: Engine, event_id: str) -> EventData:
    with engine.begin() as conn:
        return event_store.row_to_data(conn.execute(select(events).where(events.c.id == event_id)).mappings().one())


def local_create(engine: Engine, calendar_id: str, data: EventData) -> str:
    """A locally born event, as the store records it (the REST API of a later issue does the same)."""
    now = datetime.now(UTC)
    event_id = new_id()
    with engine.begin() as conn:
        event_store.insert_events(conn, [{
            "id": event_id, "calendar_id": calendar_id, "source": "local", "created_at": now,
            **event_store.event_columns(data), "version": 1, "updated_at_source": "local", "updated_at": now,
            "deleted": False, "deleted_at": None, "recurring_event_id": None,
        }])
    return event_id


class ZoomApi:
    """Looks at the Zoom emulator through Zoom's own API, as an operator would."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        token = httpx.post(
            f"{base_url}/oauth/token", params={"grant_type": "account_credentials", "account_id": "acct"},
            auth=("client", "secret"),
        ).raise_for_status().json()["access_token"]
        self.http = httpx.Client(base_url=f"{base_url}/v2", headers={"Authorization": f"Bearer {token}"})

    def meeting(self, meeting_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"/meetings/{meeting_id}")
        if response.status_code == 404:
            return None
        return response.raise_for_status().json()

    def api_calls(self) -> list[dict[str, Any]]:
        """Meeting API calls in the emulator's request log (token requests left out)."""
        log = httpx.get(f"{self.base_url}/emulator/requests").raise_for_status().json()["requests"]
        return [r for r in log if r["path"].startswith("/v2/")]

    def clear_log(self) -> None:
        httpx.delete(f"{self.base_url}/emulator/requests").raise_for_status()


def zoom_settings(zoom_url: str) -> dict[str, str]:
    return {
        "CALSYNC_ZOOM_BASE_URL": f"{zoom_url}/v2", "CALSYNC_ZOOM_OAUTH_URL": f"{zoom_url}/oauth/token",
        "CALSYNC_ZOOM_ACCOUNT_ID": "acct", "CALSYNC_ZOOM_CLIENT_ID": "client", "CALSYNC_ZOOM_CLIENT_SECRET": "secret",
    }


def api_key(engine: Engine, scope: str = "write", user: str | None = None) -> str:
    """A new API key (store/users.py) for `user` (name or id; default: the default owner, who owns what
    the store makes without a named user)."""
    from calsync.store import users

    with engine.begin() as conn:
        owner = users.find_user(conn, user)["id"] if user else users.default_owner(conn)
        return users.create_api_key(conn, owner, scope, "test")[1]  # type: ignore[arg-type]


def auth_headers(engine: Engine, scope: str = "write", user: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(engine, scope, user)}"}


def page_user(engine: Engine) -> str:
    """The default owner's id: `create_app(..., open_page_user=page_user(engine))` for tests of the web
    page, which sends no key until web login exists."""
    from calsync.store import users

    with engine.begin() as conn:
        return users.default_owner(conn)


def google_account_bound(engine: Engine, base_url: str, token: str, calendar_id: str, *,
                         account_name: str | None = None, name: str | None = None) -> tuple[str, dict[str, str]]:
    """In this process, what `calsync account add google --name NAME --token TOKEN --base-url URL` and
    `calsync calendar bind ACCOUNT CALENDAR [--name NAME] --json` make (the same engine/setup calls, the
    CLI's defaults: two-way, merge, a new local calendar named after the remote one): (account id,
    {"calendar_id", "binding_id"}). For tests whose subject is not those two commands (they are tests/test_cli.py's):
    each command in its own process costs a second or two of interpreter start and imports."""
    from calsync.engine import setup
    from calsync.model import Account
    from calsync.providers import provider_for

    account_id = setup.add_account(engine, "google", account_name or token, base_url, {"token": token})
    client = provider_for(Account(account_id, "google", account_name or token, base_url, {"token": token}))
    try:
        info = {c.remote_id: c for c in client.list_calendars()}[calendar_id]
    finally:
        client.close()
    bound = setup.bind_calendar(engine, account_id, calendar_id, setup.NewCalendar(name or info.name, info.time_zone,
                                                                                   info.color))
    return account_id, {"calendar_id": bound.calendar_id, "binding_id": bound.binding_id}
