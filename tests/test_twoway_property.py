"""Property: whatever the interleaving of local edits, remote edits on two bindings, deletions,
faults and syncs, once the system is quiet every event agrees everywhere, nothing is duplicated,
and every remaining difference is a recorded conflict."""
from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from calsync.emulators.server import RunningServer
from calsync.engine import local
from calsync.engine.sync import sync_once
from calsync.model import Account
from calsync.providers.google import GoogleProvider
from calsync.providers.http import RetryPolicy
from calsync.store import accounts as account_store
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store.db import open_engine
from tests.helpers import GoogleApi, admin

SIDES = ("a", "b")
index = st.integers(0, 7)
operation = st.one_of(
    st.tuples(st.just("local_create")),
    st.tuples(st.just("local_edit"), index),
    st.tuples(st.just("local_delete"), index),
    st.tuples(st.just("remote_create"), st.sampled_from(SIDES)),
    st.tuples(st.just("remote_edit"), st.sampled_from(SIDES), index),
    st.tuples(st.just("remote_delete"), st.sampled_from(SIDES), index),
    st.tuples(st.just("fault"), st.integers(1, 4)),
    st.tuples(st.just("sync")),
)


def fast(account: Account) -> GoogleProvider:
    return GoogleProvider.from_account(account, retry=RetryPolicy(attempts=2, base_delay=0.01))


class World:
    def __init__(self, base: str, folder: Path) -> None:
        admin(base, "POST", "/reset")
        self.base = base
        self.api = GoogleApi(base, "alice")
        self.remote = {"a": self.api.primary_id(), "b": self.api.create_calendar("B")}
        self.engine: Engine = open_engine(f"sqlite:///{folder / 'calsync.db'}")
        with self.engine.begin() as conn:
            account = account_store.create_account(conn, "google", "alice", base, {"token": "alice"})
            self.hub = account_store.create_calendar(conn, "hub")
            self.binding = {side: account_store.create_binding(conn, self.hub, account, cal, "two-way")
                            for side, cal in self.remote.items()}
        self.counter = 0
        self.sync()

    def sync(self, later: bool = False) -> Any:
        now = datetime.now(UTC) + timedelta(days=1) if later else None
        return sync_once(self.engine, make_provider=fast, now=now)

    def fresh_title(self) -> str:
        self.counter += 1
        return f"t{self.counter}"

    def live_local(self) -> list[dict[str, Any]]:
        with self.engine.begin() as conn:
            return event_store.list_events(conn, calendar_id=self.hub)

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        hour = 8 + self.counter % 10
        if kind == "local_create":
            local.create_event(self.engine, self.hub, {"title": self.fresh_title(),
                                                       "start": f"2026-12-02T{hour:02d}:00:00Z",
                                                       "end": f"2026-12-02T{hour:02d}:30:00Z"})
        elif kind in ("local_edit", "local_delete"):
            events = self.live_local()
            if events:
                target = events[op[1] % len(events)]["id"]
                if kind == "local_edit":
                    local.update_event(self.engine, target, {"title": self.fresh_title()}, None)
                else:
                    local.delete_event(self.engine, target, None)
        elif kind == "remote_create":
            self.api.insert(self.remote[op[1]], self.fresh_title(),
                            at=datetime(2026, 12, 3, hour, tzinfo=UTC))
        elif kind in ("remote_edit", "remote_delete"):
            items = self.api.list_all(self.remote[op[1]])
            if items:
                target = items[op[2] % len(items)]["id"]
                if kind == "remote_edit":
                    self.api.patch(self.remote[op[1]], target, summary=self.fresh_title())
                else:
                    self.api.delete(self.remote[op[1]], target)
        elif kind == "fault":
            admin(self.base, "POST", "/faults", json={"status": 503, "count": op[1]})
        else:
            self.sync()

    def quiesce(self) -> None:
        admin(self.base, "DELETE", "/faults")
        for _ in range(8):
            report = self.sync(later=True)
            busy = any(r.created or r.updated or r.deleted for r in report.inbound + report.outbound)
            if not busy:
                return
        raise AssertionError("the system does not become quiet")

    def check(self) -> None:
        with self.engine.begin() as conn:
            events = event_store.list_events(conn, calendar_id=self.hub, include_deleted=True)
            conflicted = {(c["event_id"], c["binding_id"]) for c in conflict_store.list_conflicts(conn)}
        for side, binding in self.binding.items():
            remote = {e["id"]: e for e in self.api.list_all(self.remote[side])}
            linked: dict[str, dict[str, Any]] = {}
            for event in events:
                for link in event["links"]:
                    if link["binding_id"] == binding and not link["remote_deleted"]:
                        assert link["remote_id"] not in linked, "two local events for one remote event"
                        linked[link["remote_id"]] = event
            assert set(remote) <= set(linked), \
                f"remote events nobody knows on {side}: {set(remote) - set(linked)}"
            for event in events:
                if (event["id"], binding) in conflicted:
                    continue
                copies = [rid for rid, e in linked.items() if e["id"] == event["id"] and rid in remote]
                if event["deleted"]:
                    assert copies == [], f"{event['title']} deleted locally but alive on {side}"
                    continue
                assert len(copies) == 1, f"{event['title']} has {len(copies)} copies on {side}"
                copy = remote[copies[0]]
                assert copy.get("summary", "") == event["title"], f"{side}: {copy.get('summary')} != {event['title']}"
            for rid in remote:
                assert not linked[rid]["deleted"] or (linked[rid]["id"], binding) in conflicted


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=1, max_size=14))
def test_any_interleaving_converges(google_server: RunningServer, ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        world = World(google_server.url, Path(folder))
        try:
            for op in ops:
                try:
                    world.apply(op)
                except httpx.HTTPStatusError as exc:  # a remote edit that met an injected fault
                    assert exc.response.status_code == 503
            world.quiesce()
            world.check()
        finally:
            world.engine.dispose()
