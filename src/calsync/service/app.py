"""The FastAPI application and the process that runs it with its workers (`calsync serve`)."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import Engine

from calsync import __version__
from calsync.budgets import DEFAULT_BUDGETS, RequestBudget
from calsync.conferencing.base import ConferenceAdapter
from calsync.credentials import provider_maker
from calsync.engine.pool import WarmProviders
from calsync.engine.scheduler import Dispatcher, WorkerSettings
from calsync.hooks import delivery as hook_delivery
from calsync.service.api import PREFIX, api_router
from calsync.service.auth import Auth, Caller, authenticate, authenticate_admin, health_router
from calsync.service.control import control_router
from calsync.service.errors import AllowedMethods
from calsync.service.feed_routes import add_feed
from calsync.service.history_routes import history_router
from calsync.service.hook_routes import hook_router
from calsync.service.limits import LOGIN_BURST, LOGIN_PREFIXES, LOGIN_RATE, BodyLimit, Limits, RateLimit, address_key
from calsync.service.login import add_login
from calsync.service.metrics import Metrics
from calsync.service.oauth_routes import OAuthClients, oauth_api_router, oauth_router
from calsync.service.web_api import DemoControl, mount_web, web_router
from calsync.service.webhooks import google_router, graph_router
from calsync.store import accounts as account_store
from calsync.store import conferences as conference_store
from calsync.store import outbox as outbox_store
from calsync.store import scheduling
from calsync.store.sealing import SecretKeyError


def create_app(
    engine: Engine,
    metrics: Metrics | None = None,
    wake: threading.Event | None = None,
    debounce: float = 0.2,
    *,
    adapters: dict[str, ConferenceAdapter] | None = None,
    demo: DemoControl | None = None,
    control_token: str | None = None,
    poll_interval: float = 300.0,
    oauth: OAuthClients | None = None,
    open_page_user: str | None = None,
    limits: Limits | None = None,
    public_url: str | None = None,
    budgets: Mapping[str, RequestBudget] = DEFAULT_BUDGETS,
) -> FastAPI:
    """The API, web page and webhook receivers; with `control_token`, also the control endpoint
    that `calsync sync` uses to hand its work to this service; with `oauth`, the connect flows.
    `limits` (default: limits.Limits()) caps request bodies and how fast one caller may go.

    Every `/api/v1` route but `/api/v1/health` needs an API key (service/auth.py). `open_page_user`
    (a user id; only `calsync demo` and the web tests) lets requests without an Authorization header
    act as that user with write scope, so the page's tests need not log in: never on a service others
    can reach. People log in (service/login.py); `public_url` (default $CALSYNC_PUBLIC_URL) being
    https makes the session cookie `Secure`. `budgets`: the request budgets the control endpoint's
    syncs spend (the service's workers' own)."""
    metrics = metrics or Metrics()
    app = FastAPI(title="calsync", version=__version__)
    public_url = public_url or os.environ.get("CALSYNC_PUBLIC_URL") or ""
    app.state.auth = Auth(engine, open_page_user, secure_cookies=public_url.startswith("https://"))
    # the control endpoint's syncs reuse the last one's connections; `calsync serve` closes them at exit
    app.state.providers = providers = WarmProviders(provider_maker(engine))
    keyed = [Depends(authenticate)]
    app.include_router(health_router(PREFIX))
    app.include_router(api_router(engine), dependencies=keyed)
    add_feed(app, engine)  # /api/v1/changes: the feed's own routes, keyed the same way; app.state.feed
    app.include_router(hook_router(engine), dependencies=keyed)
    app.include_router(web_router(engine, adapters, demo), dependencies=keyed)
    app.include_router(history_router(engine), dependencies=keyed)
    app.include_router(google_router(engine, metrics, wake, debounce))
    app.include_router(graph_router(engine, metrics, wake, debounce))
    oauth = oauth or OAuthClients()
    app.include_router(oauth_router(engine, oauth))
    app.include_router(oauth_api_router(oauth), dependencies=keyed)
    if control_token:
        app.include_router(control_router(engine, adapters, control_token, poll_interval, providers, budgets))
    add_login(app, engine, PREFIX)
    mount_web(app)
    limits = limits or Limits()
    # the last added runs first: a caller over its rate is refused before its body is read
    app.add_middleware(AllowedMethods, routes=lambda: app.routes)
    app.add_middleware(BodyLimit, max_body_bytes=limits.max_body_bytes)
    if limits.rate > 0:
        app.add_middleware(RateLimit, rate=limits.rate, burst=limits.burst, key=limits.caller)
        app.add_middleware(RateLimit, rate=LOGIN_RATE, burst=LOGIN_BURST, key=address_key, prefixes=LOGIN_PREFIXES)

    @app.exception_handler(SecretKeyError)
    def secret_key_error(_request: Request, exc: SecretKeyError) -> JSONResponse:
        # a stored secret that cannot be opened: the operator's to fix (the message names the key
        # and where it was looked for, never a secret); nothing was written
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def prometheus(_caller: Annotated[Caller, Depends(authenticate_admin)]) -> PlainTextResponse:
        """Prometheus text, for an admin key (scrape config: `authorization: {type: Bearer, credentials: KEY}`)."""
        with engine.begin() as conn:
            accounts: Counter[tuple[str, str]] = Counter(
                (a["provider"], a["state"]) for a in account_store.list_accounts(conn)
            )
            body = metrics.render(
                conference_store.backlog(conn), scheduling.dirty_count(conn), outbox_store.backlog(conn), accounts
            )
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    return app


@dataclass
class WorkerPool:
    """The workers of one process (engine/scheduler.Dispatcher): `count` bindings in flight at once,
    woken early by the webhook receivers; and one thread delivering outbound webhooks
    (calsync/hooks/delivery.py)."""

    engine: Engine
    settings: WorkerSettings
    adapters: dict[str, ConferenceAdapter]
    metrics: Metrics
    count: int = 1
    wake: threading.Event = field(default_factory=threading.Event)
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    dispatcher: Dispatcher | None = None

    def start(self) -> None:
        settings = replace(self.settings, concurrency=max(1, self.count))
        self.dispatcher = Dispatcher(
            self.engine, settings=settings, adapters=self.adapters, on_sync=self.metrics.sync_done
        )
        thread = threading.Thread(
            target=self.dispatcher.run_forever,
            args=(self.stop_event, self.wake),
            name="calsync-dispatcher",
            daemon=True,
        )
        thread.start()
        self.threads.append(thread)
        # outbound webhooks on a thread of their own: a slow receiver never holds a sync worker
        self.threads.append(hook_delivery.start_in_thread(self.engine, self.stop_event))

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.wake.set()
        for thread in self.threads:
            thread.join(timeout)
