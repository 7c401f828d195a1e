"""Binding many calendars at once: `calsync calendar bind ACCOUNT --all` (or several remote ids) and
`POST /api/v1/accounts/{account_id}/bindings`, each calendar with the direction and policy given, in one
transaction; real processes and the service over HTTP, the Google emulator."""
from __future__ import annotations

from pathlib import Path

import httpx

from calsync.emulators.server import serve_in_thread
from calsync.engine import setup
from calsync.engine.sync import sync_once
from calsync.service.app import create_app
from calsync.store import accounts as account_store
from calsync.store import users
from calsync.store.db import open_engine
from tests.helpers import GoogleApi, migrated_sqlite
from tests.test_cli import as_json, calsync


def _account(db: Path, google_url: str, name: str, token: str) -> str:
    """The account `calsync account add google --name NAME --token TOKEN` makes, made in this process
    (that command is tests/test_cli.py's; here the subject is `calendar bind`)."""
    engine = open_engine(migrated_sqlite(db))
    try:
        return setup.add_account(engine, "google", name, google_url, {"token": token})
    finally:
        engine.dispose()


def _bindings(db: Path) -> list[dict[str, object]]:
    engine = open_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            return [dict(b) for b in account_store.list_bindings(conn)]
    finally:
        engine.dispose()


def test_cli_binds_all_calendars_of_an_account_and_then_only_the_new_ones(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "many.db"
    api = GoogleApi(google_url, "frank")
    team = [api.create_calendar(f"Team {n}") for n in range(4)]
    api.insert(team[2], "Stand-up")
    account = _account(db, google_url, "org", "frank")
    done = calsync("calendar", "bind", account, "--all", "--direction", "pull", "--policy", "remote-wins",
                   "--json", db=db)
    made = as_json(done)
    remote_ids = [api.primary_id(), *team]
    assert sorted(r["remote_calendar_id"] for r in made["bindings"]) == sorted(remote_ids)
    assert made["already_bound"] == []
    stored = _bindings(db)
    assert len(stored) == 5 and {(b["direction"], b["conflict_policy"]) for b in stored} == {("pull", "remote-wins")}
    names = {c["name"] for c in as_json(calsync("calendar", "list", "--json", db=db))}
    assert {f"Team {n}" for n in range(4)} <= names and len(names) == 5
    summary = as_json(calsync("sync", "--json", db=db))["inbound"]
    assert len(summary) == 5 and sum(s["created"] for s in summary) == 1

    newer = api.create_calendar("Team 4")
    again = calsync("calendar", "bind", account, "--all", db=db)
    assert newer in again.stdout and "1 calendar(s) bound" in again.stderr and "5 already bound" in again.stderr
    assert len(_bindings(db)) == 6


def test_cli_binds_several_named_calendars_in_one_transaction(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "several.db"
    api = GoogleApi(google_url, "gina")
    one, two, three = (api.create_calendar(f"Room {n}") for n in range(3))
    account = _account(db, google_url, "g", "gina")
    made = as_json(calsync("calendar", "bind", account, one, two, "--policy", "merge", "--json", db=db))
    assert [r["remote_calendar_id"] for r in made["bindings"]] == [one, two]
    assert {b["conflict_policy"] for b in _bindings(db)} == {"merge"}
    # one of them bound already: all refused, nothing written
    refused = calsync("calendar", "bind", account, three, one, db=db, ok=False)
    assert refused.returncode == 1 and "already bound" in refused.stderr
    missing = calsync("calendar", "bind", account, three, "nobody@example.com", db=db, ok=False)
    assert missing.returncode == 1 and "has no calendar 'nobody@example.com'" in missing.stderr
    assert len(_bindings(db)) == 2
    for args, message in (
        ((three, "--all"), "not both"),
        ((), "or give --all"),
        ((three, one, "--name", "x"), "--name and --calendar bind one remote calendar"),
        (("--all", "--direction", "sideways"), "--direction must be one of"),
    ):
        wrong = calsync("calendar", "bind", account, *args, db=db, ok=False)
        assert wrong.returncode == 2 and message in wrong.stderr, (args, wrong.stderr)
    assert len(_bindings(db)) == 2


def test_api_binds_many_calendars_for_the_accounts_owner_only(tmp_path: Path, google_url: str) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'api.db'}")
    with engine.begin() as conn:
        owner = users.create_user(conn, "hana")
        key = users.create_api_key(conn, owner, "write")[1]
        read_key = users.create_api_key(conn, owner, "read")[1]
        other = users.create_user(conn, "ivan")
        other_key = users.create_api_key(conn, other, "write")[1]
    api = GoogleApi(google_url, "hana")
    rooms = [api.create_calendar(f"Room {n}") for n in range(3)]
    api.insert(rooms[0], "Booked")
    account = setup.add_account(engine, "google", "hana", google_url, {"token": "hana"}, owner=owner)
    server = serve_in_thread(create_app(engine))
    url = f"{server.url}/api/v1/accounts/{account}/bindings"
    try:
        headers = {"Authorization": f"Bearer {key}"}
        body = {"calendars": rooms[:2], "direction": "two-way", "policy": "latest-wins"}
        # another user's account is as missing as one that does not exist; a read key may not write
        ghost = httpx.post(f"{server.url}/api/v1/accounts/{'0' * 32}/bindings", json=body, headers=headers)
        assert ghost.status_code == 404
        foreign = httpx.post(url, json=body, headers={"Authorization": f"Bearer {other_key}"})
        assert foreign.status_code == 404 and foreign.json()["detail"] == ghost.json()["detail"].replace(
            "0" * 32, account)
        assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {read_key}"}).status_code == 403
        assert httpx.post(url, json={**body, "policy": "coin-toss"}, headers=headers).status_code == 422
        assert httpx.post(url, json={**body, "all": True}, headers=headers).status_code == 422
        assert httpx.post(url, json={"direction": "pull"}, headers=headers).status_code == 422
        unknown = httpx.post(url, json={"calendars": ["nobody@example.com"]}, headers=headers)
        assert unknown.status_code == 422 and "nobody@example.com" in unknown.text
        with engine.begin() as conn:
            assert account_store.list_bindings(conn) == []

        made = httpx.post(url, json=body, headers=headers)
        assert made.status_code == 201, made.text
        assert [b["remote_calendar_id"] for b in made.json()["bindings"]] == rooms[:2]
        assert made.json()["already_bound"] == []
        twice = httpx.post(url, json={"calendars": [rooms[1]]}, headers=headers)
        assert twice.status_code == 409 and "already bound" in twice.text
        every = httpx.post(url, json={"all": True, "direction": "pull"}, headers=headers)
        assert every.status_code == 201, every.text
        assert {b["remote_calendar_id"] for b in every.json()["bindings"]} == {rooms[2], api.primary_id()}
        assert sorted(every.json()["already_bound"]) == sorted(rooms[:2])
        with engine.begin() as conn:
            stored = {b["remote_calendar_id"]: b for b in account_store.list_bindings(conn)}
        assert stored[rooms[0]]["conflict_policy"] == "latest-wins" and stored[rooms[2]]["direction"] == "pull"
        listed = httpx.get(f"{server.url}/api/v1/calendars", headers=headers).json()["calendars"]
        assert len(listed) == 4 and all(c["bindings"] for c in listed)
        sync_once(engine)
        events = httpx.get(f"{server.url}/api/v1/events", headers=headers).json()["events"]
        assert [e["title"] for e in events] == ["Booked"]
        spec = httpx.get(f"{server.url}/openapi.json").json()
        operation = spec["paths"]["/api/v1/accounts/{account_id}/bindings"]["post"]
        assert {"201", "404", "409", "422", "502"} <= set(operation["responses"])
    finally:
        server.stop()
        engine.dispose()
