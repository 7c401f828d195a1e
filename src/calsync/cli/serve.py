"""`calsync serve`, `calsync worker` and `calsync demo`: the long-running processes. Their heavy
imports (the web app, uvicorn) wait until one of them runs."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from calsync.cli.common import (
    ConfigOption,
    DbOption,
    conference_adapters,
    database,
    settle_heap,
    worker_settings,
)
from calsync.cli.output import console, err, fail


def _interrupt(*_: object) -> None:
    """SIGTERM as Ctrl-C, so the server stops through the same clean-up."""
    raise KeyboardInterrupt


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    public_url: Annotated[
        str | None,
        typer.Option(help="Base URL providers call back (default $CALSYNC_PUBLIC_URL); without it, polling only."),
    ] = None,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="Serve the API only; run `calsync worker` elsewhere.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "--concurrency",
            help="Bindings synced at once in this process (default $CALSYNC_CONCURRENCY, else 1; keep 1 on SQLite).",
        ),
    ] = None,
    poll_interval: Annotated[float | None, typer.Option(help="Seconds between polls of a quiet calendar.")] = None,
    lease_seconds: Annotated[float | None, typer.Option(help="How long a claim on work lasts.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Run the service: REST API, webhook receivers and (unless --no-workers) background workers.
    On SQLite it leaves a record beside the database, and `calsync sync` then asks it to do the work."""
    import signal

    from calsync.config import ConfigError, journal_days, load_settings
    from calsync.emulators.server import bind_socket, serve_forever
    from calsync.service import runtime
    from calsync.service.app import WorkerPool, create_app
    from calsync.service.limits import Limits, LimitSettingError
    from calsync.service.metrics import Metrics
    from calsync.service.oauth_routes import OAuthClients
    from calsync.store.urls import default_url, sqlite_file

    settings = worker_settings(config, public_url, poll_interval, lease_seconds, workers)
    adapters = conference_adapters(config)
    try:
        limits = Limits.from_settings(load_settings(config))
        days = journal_days(load_settings(config))
    except (LimitSettingError, ConfigError) as exc:
        raise fail(str(exc), 2) from exc
    database_file = sqlite_file(db or default_url())
    token = runtime.new_token() if database_file else None
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc}", 2) from exc
    # a wildcard address (the user's --host) is reached on loopback
    reach = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    url = f"http://{reach if ':' not in reach else f'[{reach}]'}:{sock.getsockname()[1]}"
    signal.signal(signal.SIGTERM, _interrupt)  # uvicorn stops cleanly on SIGTERM only while it runs
    with database(db, check_keys=True, concurrency=settings.concurrency) as engine:
        metrics = Metrics()
        pool = None if no_workers else WorkerPool(engine, settings, adapters, metrics, count=settings.concurrency)
        app_ = create_app(
            engine,
            metrics,
            wake=pool.wake if pool else None,
            adapters=adapters,
            control_token=token,
            poll_interval=settings.poll_interval,
            public_url=settings.public_url,
            # the settings were read once already (no ConfigError here); --public-url wins, as for the workers
            oauth=OAuthClients.from_settings(
                {**load_settings(config), **({"CALSYNC_PUBLIC_URL": public_url} if public_url else {})}
            ),
            limits=limits,
            budgets=settings.budgets,
        )
        if database_file and token:
            record = runtime.ServiceRecord(
                url=url, pid=os.getpid(), token=token, config=os.path.realpath(config) if config else None
            )
            try:
                runtime.claim(database_file, record)
            except RuntimeError as exc:
                raise fail(str(exc), 2) from exc
        if pool:
            pool.start()
        app_.state.feed.start_upkeep(days)  # the change journal: sequenced every second, pruned hourly
        err.print(
            f"calsync on {url} (API /api/v1, webhooks /webhooks/google, metrics /metrics); "
            f"workers: {0 if pool is None else pool.count}; "
            f"notifications: {settings.public_url or 'off (polling)'}"
        )
        settle_heap()
        try:
            serve_forever(app_, host, sock=sock, on_exit=app_.state.feed.close)  # long polls answer at once
        except KeyboardInterrupt:
            pass
        finally:
            if database_file:
                runtime.release(database_file, os.getpid())
            if pool:
                pool.stop()
            app_.state.feed.close()
            app_.state.providers.close()


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "--workers",
            help="Bindings synced at once in this process, each on its own thread; sizes its database "
            "connection pool too (default $CALSYNC_CONCURRENCY, else 16).",
        ),
    ] = None,
    public_url: Annotated[str | None, typer.Option(help="Base URL providers call back, for channel set-up.")] = None,
    poll_interval: Annotated[float | None, typer.Option(help="Seconds between polls of a quiet calendar.")] = None,
    lease_seconds: Annotated[float | None, typer.Option(help="How long a claim on work lasts.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Run workers only (scale-out): they share the database's work with every other worker, and
    keep the change journal (sequenced every second, pruned hourly) as `calsync serve` does."""
    import signal
    import threading

    from calsync.config import ConfigError, journal_days, load_settings
    from calsync.engine.journal_upkeep import JournalUpkeep
    from calsync.service.app import WorkerPool
    from calsync.service.metrics import Metrics

    settings = worker_settings(config, public_url, poll_interval, lease_seconds, concurrency, default_concurrency=16)
    adapters = conference_adapters(config)
    try:
        days = journal_days(load_settings(config))
    except ConfigError as exc:
        raise fail(str(exc), 2) from exc
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with database(db, check_keys=True, concurrency=settings.concurrency) as engine:
        pool = WorkerPool(engine, settings, adapters, Metrics(), count=settings.concurrency)
        # a worker-only deployment runs no service: its workers keep the journal (several at once is safe)
        upkeep = JournalUpkeep(engine, days)
        settle_heap()
        pool.start()
        upkeep.start()
        err.print(f"calsync worker: {pool.count} binding(s) at once; Ctrl-C or SIGTERM to stop")
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            upkeep.stop()
            pool.stop()


def demo(
    db: DbOption = None,
    port: Annotated[
        int, typer.Option(help="Port of the demo service: web page, API, webhooks (0: any free port).")
    ] = 8000,
    host: Annotated[str, typer.Option(help="Address the demo service listens on.")] = "127.0.0.1",
    once: Annotated[
        bool, typer.Option("--once", help="One-shot run: sync, remote edits, re-sync, print, exit.")
    ] = False,
    keep_running: Annotated[
        bool, typer.Option(hidden=True, help="Kept for old scripts: serving is the default.")
    ] = False,
) -> None:
    """The whole service on SQLite with sample Google, Outlook and CalDAV accounts and Zoom, until Ctrl-C."""
    from calsync.demo import run_demo

    run_demo(db, host=host, port=port, once=once, console=console)
