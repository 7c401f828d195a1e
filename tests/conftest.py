"""Shared fixtures: real emulators over loopback HTTP, real SQLite stores, real PostgreSQL databases."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from sqlalchemy import Engine

from calsync.emulators.google import GoogleEmulator, create_app
from calsync.emulators.server import RunningServer, serve_in_thread
from tests.helpers import GoogleApi

# provider-neutral remotes (fixtures `remote`, `push_remote`) for the parametrised suites
pytest_plugins = ["tests.remotes"]


def _one_default_tls_context() -> None:
    """Every httpx client the tests make without a TLS context of their own (`httpx.post(...)`, a
    `GoogleApi`, an emulator reset before each test: thousands in a run) gets the same default one,
    made once, instead of loading the CA bundle again: 25-100 ms a client, a quarter of some files'
    time. Only the default (verify=True, no client certificate) is shared; a context or CA file a
    test or calsync passes is used as given, and calsync's own clients share one transport anyway
    (providers/http.shared_transport). Nothing the tests send is TLS but to the emulators that pass
    their own CA, so what they prove is unchanged."""
    import ssl

    from httpx._transports import default as transports

    made = transports.create_ssl_context
    shared: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
        if verify is not True or cert is not None:
            return made(verify=verify, cert=cert, trust_env=trust_env)
        key = (trust_env, os.environ.get("SSL_CERT_FILE") if trust_env else None,
               os.environ.get("SSL_CERT_DIR") if trust_env else None)
        if key not in shared:
            shared[key] = made(verify=verify, cert=cert, trust_env=trust_env)
        return shared[key]

    transports.create_ssl_context = create_ssl_context


_one_default_tls_context()


@pytest.fixture(scope="session", autouse=True)
def _own_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests' own user data directory: the key file of PostgreSQL databases (store/sealing.py)
    lives there, never in the real one of whoever runs the tests."""
    saved = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))
    yield
    if saved is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = saved


@pytest.fixture(scope="session")
def google_server() -> Iterator[RunningServer]:
    """One Google Calendar emulator per test session, on a free loopback port."""
    server = serve_in_thread(create_app(GoogleEmulator()))
    yield server
    server.stop()


@pytest.fixture()
def google_url(google_server: RunningServer) -> str:
    """Base URL of a freshly reset Google emulator (state, faults and request log cleared)."""
    httpx.post(f"{google_server.url}/emulator/reset").raise_for_status()
    return google_server.url


@pytest.fixture(scope="session")
def zoom_server() -> Iterator[RunningServer]:
    """One Zoom-compatible emulator per test session."""
    from calsync.emulators.zoom import ZoomEmulator
    from calsync.emulators.zoom import create_app as create_zoom_app

    server = serve_in_thread(create_zoom_app(ZoomEmulator()))
    yield server
    server.stop()


@pytest.fixture()
def zoom_url(zoom_server: RunningServer) -> str:
    httpx.post(f"{zoom_server.url}/emulator/reset").raise_for_status()
    return zoom_server.url


# --- PostgreSQL: a real server (scripts/test starts or finds one and sets CALSYNC_TEST_PG_URL) ----------------

NO_PG_REASON = "no PostgreSQL server: run ./scripts/test or set CALSYNC_TEST_PG_URL"


def _no_postgres(reason: str) -> NoReturn:
    """Skip, except in CI, where a missing server is a failure (an explicit CALSYNC_SKIP_PG=1 still skips)."""
    if os.environ.get("CI") == "true" and os.environ.get("CALSYNC_SKIP_PG") != "1":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


def _admin_conninfo(url: str) -> str:
    """A libpq URL (what psycopg.connect takes) for a SQLAlchemy or plain postgresql:// URL."""
    from sqlalchemy.engine import make_url

    from calsync.store.db import normalise_url

    return make_url(normalise_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The PostgreSQL server the tests may create databases on (CALSYNC_TEST_PG_URL), checked to answer."""
    from sqlalchemy.engine import make_url

    from calsync.store.db import normalise_url

    url = os.environ.get("CALSYNC_TEST_PG_URL", "").strip()
    if not url:
        _no_postgres(NO_PG_REASON if os.environ.get("CALSYNC_SKIP_PG") != "1" else "CALSYNC_SKIP_PG=1")
    try:
        import psycopg
    except ImportError:
        _no_postgres("psycopg is not installed: pip install -e '.[postgres]'")
    try:
        with psycopg.connect(_admin_conninfo(url), connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        shown = make_url(normalise_url(url)).render_as_string(hide_password=True)
        _no_postgres(f"PostgreSQL at CALSYNC_TEST_PG_URL={shown} does not answer: {exc}")
    return url


@pytest.fixture()
def pg_url(pg_server_url: str) -> Iterator[str]:
    """SQLAlchemy URL (postgresql+psycopg://) of a fresh, empty database of its own, dropped after the test."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    from calsync.store.db import normalise_url

    name = f"calsync_test_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    admin = _admin_conninfo(pg_server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(normalise_url(pg_server_url)).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            # FORCE (PostgreSQL 13+) also ends connections a still-running thread opened in between
            force = sql.SQL(" WITH (FORCE)" if conn.info.server_version >= 130000 else "")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database on each backend: a SQLite file, then a PostgreSQL database (see pg_url)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'calsync.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite store in the test's own folder (a copy of a template migrated once)."""
    from calsync.store.db import open_engine
    from tests.helpers import migrated_sqlite

    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    yield engine
    engine.dispose()


@pytest.fixture()
def alice(google_url: str) -> GoogleApi:
    """Another Google client, signed in as alice, on a freshly reset emulator."""
    return GoogleApi(google_url, "alice")


@pytest.fixture(scope="session")
def graph_server() -> Iterator[RunningServer]:
    """One Microsoft Graph emulator per test session, on a free loopback port."""
    from calsync.emulators.graph import GraphEmulator
    from calsync.emulators.graph import create_app as create_graph_app

    server = serve_in_thread(create_graph_app(GraphEmulator()))
    yield server
    server.stop()


@pytest.fixture()
def graph_url(graph_server: RunningServer) -> str:
    """Base URL of a freshly reset Graph emulator (state, switches, faults, subscriptions and logs cleared)."""
    httpx.post(f"{graph_server.url}/emulator/reset").raise_for_status()
    return graph_server.url


# --- the REST API's credentials -------------------------------------------------------------------------------


@pytest.fixture()
def api_headers(engine: Engine) -> dict[str, str]:
    """Headers that let a test's requests through /api/v1 of a service over `engine` (tests/test_fuzz_api.py
    sends them with every request): a write key of the default user, made in `engine`."""
    from tests.helpers import auth_headers

    return auth_headers(engine, "write")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one per test module (tests/test_web*.py)."""
    from tests.test_web import CHROMIUM_ARGS, _chromium, _unavailable

    path = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
