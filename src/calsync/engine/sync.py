"""One deterministic pass over the bindings that are due (inbound now; outbound and conferences later)."""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from calsync.engine.inbound import MassDeleteGuard, PageHook, SyncResult, sync_binding
from calsync.providers import provider_for
from calsync.providers.base import Provider
from calsync.store import repo

ProviderFactory = Callable[..., Provider]


def sync_once(
    engine: Engine, *, binding_ids: list[str] | None = None, full: bool = False, force: bool = False,
    guard: MassDeleteGuard | None = None, after_page: PageHook | None = None,
    make_provider: ProviderFactory = provider_for,
) -> list[SyncResult]:
    """Sync each binding once. A failing binding is recorded and reported; the others still run."""
    with engine.begin() as conn:
        rows = [repo.get_binding(conn, b) for b in binding_ids] if binding_ids else repo.list_bindings(conn)
        accounts = {r["account_id"]: repo.get_account(conn, r["account_id"]) for r in rows}
    providers: dict[str, Provider] = {}
    results: list[SyncResult] = []
    try:
        for row in rows:
            account = accounts[row["account_id"]]
            if account.state == "auth-failed":
                results.append(SyncResult(
                    binding_id=row["id"], status="auth-failed",
                    message="account credentials were rejected; re-add the account",
                ))
                continue
            provider = providers.get(account.id) or providers.setdefault(account.id, make_provider(account))
            results.append(sync_binding(
                engine, provider, row["id"], full=full, force=force, guard=guard, after_page=after_page
            ))
    finally:
        for provider in providers.values():
            provider.close()
    return results
