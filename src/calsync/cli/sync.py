"""`calsync sync` and `calsync status`: one sync in this process, with progress for a person
watching, and the health of every binding and account."""

from __future__ import annotations

import os
import uuid
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy import Engine

from calsync.cli.common import (
    ConfigOption,
    DbOption,
    JsonOption,
    conference_adapters,
    database,
    settle_heap,
    worker_settings,
)
from calsync.cli.ids import resolve_ids
from calsync.cli.output import console, err, fail, markup_safe, print_block, print_json
from calsync.conferencing.base import ConferenceAdapter
from calsync.engine.health import status_snapshot
from calsync.engine.inbound import PageHook, SyncResult
from calsync.engine.scheduler import WorkerSettings
from calsync.engine.sync import BindingBusy, SyncReport, sync_held
from calsync.hooks.delivery import deliver_due
from calsync.report_text import print_report
from calsync.store import accounts as account_store
from calsync.store.common import NotFound
from calsync.views import jsonable

WEBHOOK_SECONDS = 10.0  # at most this long delivering webhooks after a sync (what is left waits for the next)


def sync(
    binding: Annotated[list[str] | None, typer.Option(help="Only this binding (repeatable).")] = None,
    full: Annotated[bool, typer.Option(help="Ignore stored tokens and list everything again.")] = False,
    force: Annotated[
        bool, typer.Option(help="Let a full sync delete most of a calendar (mass-delete guard off).")
    ] = False,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    local: Annotated[
        bool, typer.Option("--local", help="Sync in this process even when a service serves the database.")
    ] = False,
) -> None:
    """Sync once: everything that is due (inbound, outbound, then conference work, then the outbound
    webhooks due, for at most 10 s), then print a summary.
    When `calsync serve` runs on this SQLite database, the service does the sync (see calsync.launch).
    Otherwise the bindings are leased first, so no worker (of any process) syncs them meanwhile."""
    adapters = conference_adapters(config)
    settings = worker_settings(config, None, None, None)
    with database(db) as engine:
        if binding:
            with engine.connect() as conn:
                binding = resolve_ids(conn, "binding", binding)
        settle_heap()
        try:
            report = run_sync(
                engine,
                binding_ids=binding or None,
                full=full,
                force=force,
                show_progress=not as_json,
                adapters=adapters,
                settings=settings,
            )
        except NotFound as exc:
            raise fail(str(exc), 1) from exc
        except BindingBusy as exc:
            raise fail(f"{exc}; try again later", 1) from exc
        hooks = deliver_due(engine, WEBHOOK_SECONDS)  # the outbound webhooks due now, after the sync
    for adapter in adapters.values():
        adapter.close()
    if as_json:
        print_json(report.as_dict())
    else:
        print_report(jsonable(report.as_dict()), console, err)
        if hooks.claimed:
            err.print(f"webhooks: {hooks.delivered} delivered, {hooks.retried} to retry, {hooks.failed} failed")
    if not report.ok:
        raise typer.Exit(1)


def run_sync(
    engine: Engine,
    *,
    binding_ids: list[str] | None = None,
    full: bool = False,
    force: bool = False,
    show_progress: bool = True,
    adapters: dict[str, ConferenceAdapter] | None = None,
    settings: WorkerSettings | None = None,
) -> SyncReport:
    """sync_held (this process's own lease on each binding) with a Rich progress line for long
    listings when a person is watching."""
    settings = settings or WorkerSettings()
    owner = f"cli-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def held(after_page: PageHook | None = None) -> SyncReport:
        return sync_held(
            engine,
            owner,
            binding_ids=binding_ids,
            full=full,
            force=force,
            adapters=adapters,
            lease_seconds=settings.lease_seconds,
            poll_interval=settings.poll_interval,
            after_page=after_page,
            on_wait=lambda b: err.print(f"binding {b} is being synced elsewhere; waiting for it"),
            budgets=settings.budgets,  # the workers' budgets: shared with them on the account rows
        )

    if not (show_progress and console.is_terminal):
        return held()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("syncing", total=None, detail="")

        def on_page(pages: int, result: SyncResult) -> None:
            seen = result.created + result.updated + result.deleted + result.unchanged
            kind = "full" if result.full else "incremental"
            progress.update(
                task, description=f"{kind} sync {result.binding_id[:8]}", detail=f"page {pages}, {seen} events"
            )

        return held(on_page)


def status(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Sync health: per binding last sync, token age, channel expiry, dirty, last error; per account
    state and backoff; conflicts and conference backlog. One block per binding (it reads at 80 columns)."""
    with database(db) as engine:
        snapshot = status_snapshot(engine)
        with engine.begin() as conn:
            calendars = {c["id"]: c["name"] for c in account_store.list_calendars(conn)}
    if as_json:
        print_json(snapshot)
        return
    accounts = {a["id"]: a for a in snapshot["accounts"]}
    for b in snapshot["bindings"]:
        account = accounts.get(b["account_id"])
        who = f"{account['provider']} account {account['name']}" if account else b["account_id"]
        if account and account["user"] and account["user"] != account["name"]:
            who += f" ({account['user']})"
        stats = b["last_sync_stats"] or {}
        channel = b["channel"]
        fields = [
            (
                "calendar",
                f"{calendars.get(b['calendar_id'], b['calendar_id'])} ({b['direction']}, {b['conflict_policy']})",
            ),
            ("remote", f"{b['remote_calendar_id']} on {who}"),
            (
                "last sync",
                f"{b['last_sync_status'] or 'never'}" + (f" at {b['last_sync_at']}" if b["last_sync_at"] else ""),
            ),
            ("last success", b["last_success_at"] or "never"),
            ("token age", f"{b['token_age_seconds']}s" if b["token_age_seconds"] is not None else "no token"),
            ("channel", f"expires {channel['expiration']}" if channel else "none (polled)"),
            (
                "waiting",
                ", ".join(
                    w
                    for w in (
                        "dirty" if b["dirty"] else "",
                        f"{b['outbox_backlog']} change(s) to push" if b["outbox_backlog"] else "",
                    )
                    if w
                )
                or "nothing",
            ),
        ]
        if stats:
            fields.append(("last sync did", ", ".join(f"{k} {v}" for k, v in stats.items() if k in STATS_SHOWN)))
        if b["last_error"]:
            fields.append(("error", b["last_error"]))
        print_block(f"binding [bold]{b['id']}[/bold]", fields)
    if not snapshot["bindings"]:
        console.print("no bindings yet (calsync calendar bind)", highlight=False)
    for a in snapshot["accounts"]:
        if a["state"] != "ok" or a["backoff_until"]:
            console.print(
                f"[red]account {markup_safe(a['name'])} ({a['id']}): {a['state']}[/red] "
                f"{('backing off until ' + a['backoff_until']) if a['backoff_until'] else ''} "
                f"{markup_safe(a['last_error'] or '')}",
                highlight=False,
            )
    console.print(
        f"open conflicts: {snapshot['open_conflicts']}   conference work waiting: {snapshot['conference_backlog']}",
        highlight=False,
    )


STATS_SHOWN = ("pages", "requests", "created", "updated", "deleted", "conflicts")
