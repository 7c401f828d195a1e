"""One deterministic pass over everything that is due: inbound sync, then the outbox of local
changes, then conference work (`calsync sync`)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from calsync.conferencing.base import ConferenceAdapter
from calsync.engine.conferences import ConferenceEngine, ConferenceRun
from calsync.engine.inbound import MassDeleteGuard, PageHook, SyncResult, sync_binding
from calsync.engine.outbound import PushResult, Pusher, WriteHook
from calsync.engine.pool import ProviderPool
from calsync.model import Account
from calsync.providers import provider_for
from calsync.providers.base import Provider
from calsync.store import repo


@dataclass
class SyncReport:
    inbound: list[SyncResult] = field(default_factory=list)
    outbound: list[PushResult] = field(default_factory=list)
    conferences: ConferenceRun = field(default_factory=ConferenceRun)

    @property
    def ok(self) -> bool:
        return (all(r.status in ("ok", "skipped") for r in self.inbound)
                and all(r.status in ("ok", "skipped") for r in self.outbound) and not self.conferences.failed)

    def as_dict(self) -> dict[str, Any]:
        return {"inbound": [r.as_dict() for r in self.inbound], "outbound": [r.as_dict() for r in self.outbound],
                "conferences": self.conferences.as_dict()}


def sync_once(
    engine: Engine, *, binding_ids: list[str] | None = None, full: bool = False, force: bool = False,
    guard: MassDeleteGuard | None = None, after_page: PageHook | None = None,
    make_provider: Callable[[Account], Provider] = provider_for,
    adapters: dict[str, ConferenceAdapter] | None = None, now: datetime | None = None,
    after_write: WriteHook | None = None,
) -> SyncReport:
    """Sync each binding once (a failing binding is recorded and reported; the others still run),
    push each binding's queued local changes, then work the conference outbox that the changes filled (when `adapters` are given; work for a
    conference system that is not configured here waits in the outbox)."""
    with engine.begin() as conn:
        rows = [repo.get_binding(conn, b) for b in binding_ids] if binding_ids else repo.list_bindings(conn)
        accounts = {r["account_id"]: repo.get_account(conn, r["account_id"]) for r in rows}
    pool = ProviderPool(engine, make_provider)
    report = SyncReport()
    try:
        for row in rows:
            if accounts[row["account_id"]].state == "auth-failed":
                report.inbound.append(SyncResult(
                    binding_id=row["id"], status="auth-failed",
                    message="account credentials were rejected; re-add the account",
                ))
                continue
            report.inbound.append(sync_binding(
                engine, pool.get(row["account_id"]), row["id"], full=full, force=force, guard=guard,
                after_page=after_page,
            ))
        for row in rows:
            if row["direction"] != "pull" and accounts[row["account_id"]].state == "ok":
                report.outbound.append(
                    Pusher(engine, pool.get(row["account_id"]), row["id"], after_write=after_write).run(now))
        if adapters is not None:
            report.conferences = ConferenceEngine(engine, adapters, pool).run(now=now)
    finally:
        pool.close()
    return report
