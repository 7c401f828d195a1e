"""One deterministic pass over everything that is due: inbound sync, then the outbox of local
changes, then conference work (`calsync sync`). Its requests spend each account's request budget as
a worker's do (scheduler.AccountRequests), so a sync asked for beside running workers keeps the
account under its provider's quota with them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from calsync.budgets import DEFAULT_BUDGETS, RequestBudget
from calsync.conferencing.base import ConferenceAdapter
from calsync.engine.conferences import ConferenceEngine, ConferenceRun
from calsync.engine.inbound import MassDeleteGuard, PageHook, SyncResult, sync_binding
from calsync.engine.outbound import Pusher, PushResult, WriteHook
from calsync.engine.pool import ProviderPool, WarmProviders
from calsync.engine.scheduler import AccountRequests
from calsync.model import Account, utcnow
from calsync.providers.base import Provider
from calsync.statuses import ACCOUNT_STOPPED
from calsync.store import accounts as account_store
from calsync.store import scheduling


@dataclass
class SyncReport:
    inbound: list[SyncResult] = field(default_factory=list)
    outbound: list[PushResult] = field(default_factory=list)
    conferences: ConferenceRun = field(default_factory=ConferenceRun)

    @property
    def ok(self) -> bool:
        return (
            all(r.status in ("ok", "skipped") for r in self.inbound)
            and all(r.status in ("ok", "skipped") for r in self.outbound)
            and not self.conferences.failed
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "inbound": [r.as_dict() for r in self.inbound],
            "outbound": [r.as_dict() for r in self.outbound],
            "conferences": self.conferences.as_dict(),
        }


class BudgetedPool(ProviderPool):
    """A pass's clients, each spending its account's request budget before every request it sends
    (none prepaid: no claim paid for a first one); unhooked before they are closed or given back."""

    def __init__(
        self,
        engine: Engine,
        make: Callable[[Account], Provider] | None,
        release: Callable[[Provider], None] | None,
        budgets: Mapping[str, RequestBudget],
    ) -> None:
        super().__init__(engine, make, release)
        self.budgets = dict(budgets)
        self.spending: dict[str, AccountRequests | None] = {}  # None: a client without budget hooks

    def get(self, account_id: str) -> Provider:
        provider = super().get(account_id)
        if account_id not in self.spending:
            spending = AccountRequests.attach(self.engine, provider, account_id, self.budgets)
            if spending is not None:
                spending.prepaid = 0
            self.spending[account_id] = spending
        return provider

    def close(self) -> None:
        for spending in self.spending.values():
            if spending is not None:
                spending.detach()
        self.spending.clear()
        super().close()


def sync_once(
    engine: Engine,
    *,
    binding_ids: list[str] | None = None,
    full: bool = False,
    force: bool = False,
    guard: MassDeleteGuard | None = None,
    after_page: PageHook | None = None,
    make_provider: Callable[[Account], Provider] | None = None,
    adapters: dict[str, ConferenceAdapter] | None = None,
    now: datetime | None = None,
    after_write: WriteHook | None = None,
    release_provider: Callable[[Provider], None] | None = None,
    budgets: Mapping[str, RequestBudget] = DEFAULT_BUDGETS,
) -> SyncReport:
    """Sync each binding once (a failing binding is recorded and reported; the others still run),
    push each binding's queued local changes, then work the conference outbox that the changes
    filled (when `adapters` are given; work for a conference system that is not configured here
    waits in the outbox). Every request spends its account's budget (`budgets` per provider kind:
    the settings' CALSYNC_REQUEST_BUDGET_*), waiting when it is spent."""
    with engine.begin() as conn:
        rows = (
            [account_store.get_binding(conn, b) for b in binding_ids]
            if binding_ids
            else account_store.list_bindings(conn)
        )
        accounts = {r["account_id"]: account_store.get_account(conn, r["account_id"]) for r in rows}
    pool = BudgetedPool(engine, make_provider, release_provider, budgets)
    report = SyncReport()
    try:
        for row in rows:
            account = accounts[row["account_id"]]
            if account.state in ACCOUNT_STOPPED:
                report.inbound.append(SyncResult(binding_id=row["id"], status="auth-failed", message=_stopped(account)))
                continue
            report.inbound.append(
                sync_binding(
                    engine,
                    pool.get(row["account_id"]),
                    row["id"],
                    full=full,
                    force=force,
                    guard=guard,
                    after_page=after_page,
                )
            )
        for row in rows:
            if row["direction"] != "pull" and accounts[row["account_id"]].state == "ok":
                report.outbound.append(
                    Pusher(engine, pool.get(row["account_id"]), row["id"], after_write=after_write).run(now)
                )
        if adapters is not None:
            report.conferences = ConferenceEngine(engine, adapters, pool).run(now=now)
    finally:
        pool.close()
    return report


class BindingBusy(RuntimeError):
    """Another worker kept a binding's lease for longer than a requested sync would wait."""


def sync_held(
    engine: Engine,
    owner: str,
    *,
    binding_ids: list[str] | None = None,
    full: bool = False,
    force: bool = False,
    adapters: dict[str, ConferenceAdapter] | None = None,
    lease_seconds: float = 60.0,
    wait_seconds: float = 600.0,
    poll_interval: float = 300.0,
    providers: WarmProviders | None = None,
    after_page: PageHook | None = None,
    on_wait: Callable[[str], None] | None = None,
    budgets: Mapping[str, RequestBudget] = DEFAULT_BUDGETS,
) -> SyncReport:
    """sync_once for a sync someone asked a running service for: the bindings are leased first, so
    the service's own workers (and any other process) never sync the same binding at the same time.
    A binding a worker is syncing right now is waited for, then synced again (it may have changed
    since that sync began). Unknown binding ids raise store.common.NotFound before anything is leased.
    `providers`: warm clients to borrow (a service's), rather than new ones closed after the sync.
    `on_wait(binding_id)` is told once when a binding is busy and the sync waits for it. `budgets`:
    the request budgets spent as sync_once spends them."""
    with engine.begin() as conn:
        ids = (
            [account_store.get_binding(conn, b)["id"] for b in binding_ids]
            if binding_ids
            else [r["id"] for r in account_store.list_bindings(conn)]
        )
    held: dict[str, datetime | None] = {}  # binding id -> dirty_at seen when leased
    waited: set[str] = set()
    try:
        deadline = time.monotonic() + wait_seconds
        for binding_id in ids:
            while True:
                with engine.begin() as conn:
                    claim = scheduling.claim_named_binding(conn, binding_id, owner, utcnow(), lease_seconds)
                if claim is not None:
                    held[binding_id] = claim["dirty_at"]
                    break
                if time.monotonic() > deadline:
                    raise BindingBusy(f"binding {binding_id} stayed busy for {wait_seconds:.0f} s")
                if on_wait is not None and binding_id not in waited:
                    waited.add(binding_id)
                    on_wait(binding_id)
                time.sleep(0.1)

        def keep_leases(pages: int, result: SyncResult) -> None:
            until = utcnow() + timedelta(seconds=lease_seconds)
            with engine.begin() as conn:
                for binding_id in held:
                    scheduling.extend_binding_lease(conn, binding_id, owner, until)
            if after_page is not None:
                after_page(pages, result)

        make, release = (providers.borrow, providers.give_back) if providers is not None else (None, None)
        return sync_once(
            engine,
            binding_ids=ids,
            full=full,
            force=force,
            adapters=adapters,
            after_page=keep_leases,
            make_provider=make,
            release_provider=release,
            budgets=budgets,
        )
    finally:
        finished = utcnow()
        with engine.begin() as conn:
            for binding_id, dirty_at in held.items():
                scheduling.release_binding(conn, binding_id, owner, finished, poll_interval, dirty_at)


def _stopped(account: Account) -> str:
    """Why an account's bindings are not synced, and what brings them back."""
    if account.state == "reauth-required":
        return f"the account's authorisation is gone ({account.last_error}); connect it again: calsync account connect"
    return "account credentials were rejected; re-add the account"
