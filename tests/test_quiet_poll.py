"""What a quiet poll costs on PostgreSQL, the way a running service makes it (Dispatcher): one
provider request, and two transactions for all the quiet polls of a claim (the claim, which reads
what the syncs need; their tokens, stats and releases in one statement). Also the parts that made it cheaper: pooled connections
pinged only after resting (a dropped one is still replaced), a one-page listing that starts no
helper thread, and an account's backoff cleared by a success only when the claim saw one."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select, text, update
from sqlalchemy.pool import NullPool

from calsync.engine.prefetch import prefetched
from calsync.engine.scheduler import Dispatcher, Worker, WorkerSettings
from calsync.model import utcnow
from calsync.store import accounts as account_store
from calsync.store import db, scheduling
from calsync.store.schema import accounts, bindings
from tests.remotes import GoogleRemote, open_remote


@pytest.fixture()
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = db.open_engine(pg_url, 8)
    yield engine
    engine.dispose()


@pytest.fixture()
def google(request: pytest.FixtureRequest) -> GoogleRemote:
    remote = open_remote("google", request)
    assert isinstance(remote, GoogleRemote)
    return remote


def _make_due(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(bindings).values(next_poll_at=utcnow() - timedelta(seconds=1)))


def _dispatch_all(dispatcher: Dispatcher) -> int:
    """Claim and sync until nothing is due; how many bindings were started."""
    started = 0
    while True:
        _full, claimed = dispatcher.dispatch_once()
        started += claimed
        while dispatcher.in_flight:
            dispatcher._freed.wait(0.05)
            dispatcher._freed.clear()
        if claimed == 0:
            return started


def test_quiet_polls_are_one_request_each_and_two_transactions_together(pg_engine: Engine, google: GoogleRemote) -> None:
    google.seed(5)
    binding = google.bind(pg_engine)
    others = [google.bind(pg_engine, google.new_calendar(f"quiet {n}")) for n in range(3)]  # one account
    dispatcher = Dispatcher(
        pg_engine,
        settings=WorkerSettings(poll_interval=3600, concurrency=4),
        make_provider=google.make_provider(),
    )
    try:
        assert _dispatch_all(dispatcher) == 4  # the first syncs
        _make_due(pg_engine)
        statements: list[str] = []
        commits = [0]

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            statements.append(" ".join(statement.split()[:4]).upper())

        def committed(_conn: object) -> None:
            commits[0] += 1

        google.clear_requests()
        event.listen(pg_engine, "before_cursor_execute", count)
        event.listen(pg_engine, "commit", committed)
        try:  # what dispatch_once does for the bindings it claims (without its look for conference work)
            claims, details, known = dispatcher.worker.claim(utcnow(), 32)
            assert sorted(c["id"] for c in claims) == sorted([binding, *others])
            for claim in claims:
                dispatcher._sync((claim, details[claim["id"]], known.get(claim["account_id"])))
            with pg_engine.connect() as conn:  # synced, not yet given back: still leased (not counted)
                leased = account_store.get_binding(conn, binding)
            del statements[-1]
            assert leased["lease_owner"] == dispatcher.owner
            dispatcher.release_quiet()  # (the next dispatch_once's first step)
        finally:
            event.remove(pg_engine, "before_cursor_execute", count)
            event.remove(pg_engine, "commit", committed)
    finally:
        dispatcher.close()
    assert len(google.requests()) == 4, google.requests()
    # the claim (with the accounts it leased); the four tokens, stats and releases together. Before:
    # each poll wrote its page's token, stats and release in a transaction of its own (5 in all)
    assert commits[0] == 2, (commits[0], statements)
    kinds = Counter(s.split()[0] for s in statements)
    # the claim: three index ranges, the budget, the lease (RETURNING the rows), the accounts; the
    # release: one UPDATE for the four (executemany), one look for those left dirty. Before: 14 (a
    # token and a release each), and 13 for a single poll before that
    assert len(statements) <= 8, statements
    assert kinds["UPDATE"] + kinds["INSERT"] + kinds["DELETE"] <= 3, kinds  # budget, lease, release
    with pg_engine.begin() as conn:
        rows = [account_store.get_binding(conn, b) for b in (binding, *others)]
    for row in rows:
        assert row["lease_owner"] is None and row["last_sync_status"] == "ok" and row["next_poll_at"] > utcnow()
        assert row["dirty_at"] is None and row["last_sync_at"] > leased["last_sync_at"]
        stats = row["last_sync_stats"]
        assert stats is not None and stats["requests"] == 1 and stats["pages"] == 1 and stats["unchanged"] == 0


def test_the_stats_saved_with_the_token_are_the_syncs_own(pg_engine: Engine, google: GoogleRemote) -> None:
    """Saved in the last page's transaction (no later write for them): pages and requests included."""
    google.seed(7)
    binding = google.bind(pg_engine)
    worker = Worker(pg_engine, settings=WorkerSettings(poll_interval=3600), make_provider=google.make_provider(3))
    seen: list[Any] = []
    worker.on_sync = lambda result, _dirty, _at: seen.append(result)
    try:
        assert worker.run_once() is True
    finally:
        worker.close()
    (result,) = seen
    assert result.pages == 3 and result.requests == 3 and result.created == 7
    with pg_engine.begin() as conn:
        stats = account_store.get_binding(conn, binding)["last_sync_stats"]
    assert stats is not None
    for key in ("pages", "requests", "created", "updated", "deleted", "unchanged", "conflicts"):
        assert stats[key] == getattr(result, key), (key, stats, result)


def test_a_success_clears_a_backoff_the_claim_saw(pg_engine: Engine, google: GoogleRemote) -> None:
    google.seed(2)
    google.bind(pg_engine)
    with pg_engine.begin() as conn:  # backed off twice; its backoff has run out, so it may be claimed
        conn.execute(update(accounts).values(backoff_attempts=2, backoff_until=utcnow() - timedelta(seconds=1)))
    worker = Worker(pg_engine, settings=WorkerSettings(poll_interval=3600), make_provider=google.make_provider())
    try:
        assert worker.run_once() is True
    finally:
        worker.close()
    with pg_engine.begin() as conn:
        attempts, until = conn.execute(select(accounts.c.backoff_attempts, accounts.c.backoff_until)).one()
    assert attempts == 0 and until is None


# --- the connection pool ------------------------------------------------------------------------


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_reused_at_once_is_not_pinged_but_one_that_rested_is(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(pg_url, 4)
    pings = [0]
    real_ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings[0] += 1
        return bool(real_ping(dbapi_connection))

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    try:
        first = _backend_pid(engine)
        for _ in range(20):
            assert _backend_pid(engine) == first
        assert pings[0] == 0  # a busy worker's checkouts cost no round trip
        monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)
        assert _backend_pid(engine) == first
        assert pings[0] == 1
    finally:
        engine.dispose()


def test_a_connection_dropped_while_it_rested_is_replaced_before_use(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(pg_url, 4)
    admin = create_engine(pg_url, poolclass=NullPool)
    try:
        first = _backend_pid(engine)
        with admin.connect() as conn:  # the server drops it (a restart, an idle timeout) while it rests
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first}).scalar_one()
        monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)  # it has rested long enough to be pinged
        second = _backend_pid(engine)  # no error: the failed ping made the pool connect anew
        assert second != first
    finally:
        engine.dispose()
        admin.dispose()


# --- the listing helper -----------------------------------------------------------------------


class _Listing:
    def __init__(self, pages: list[tuple[int, bool]], fail_first: bool = False) -> None:
        self.pages = pages
        self.fail_first = fail_first
        self.threads: list[str] = []
        self.closed = False
        self.finished = False

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        try:
            for page in self.pages:
                self.threads.append(threading.current_thread().name)
                if self.fail_first:
                    raise ValueError("the first page failed")
                yield page
            self.finished = True  # a listing's last lines after its last page
        finally:
            self.closed = True


def _more(page: tuple[int, bool]) -> bool:
    return not page[1]  # (number, last)


def test_a_one_page_listing_starts_no_helper_thread() -> None:
    listing = _Listing([(0, True)])
    before = threading.active_count()
    with prefetched(iter(listing), name="helper", more=_more) as pages:
        assert list(pages) == [(0, True)]
        assert threading.active_count() == before
    assert listing.threads == [threading.current_thread().name]
    assert listing.finished and listing.closed


def test_a_longer_listing_still_comes_a_page_ahead_in_order() -> None:
    listing = _Listing([(0, False), (1, False), (2, True)])
    with prefetched(iter(listing), name="helper", more=_more) as pages:
        assert list(pages) == [(0, False), (1, False), (2, True)]
    assert listing.threads == [threading.current_thread().name, "helper", "helper"]
    assert listing.finished and listing.closed


def test_an_error_of_the_first_page_is_raised_where_a_loop_raises_it() -> None:
    listing = _Listing([(0, True)], fail_first=True)
    with pytest.raises(ValueError, match="first page failed"), prefetched(iter(listing), more=_more) as pages:
        list(pages)
    assert listing.closed


def test_leaving_after_the_first_page_closes_the_listing() -> None:
    listing = _Listing([(0, False), (1, True)])
    with prefetched(iter(listing), more=_more) as pages:
        for _page in pages:
            break
    assert listing.closed and not listing.finished


# --- notifications reach an idle worker --------------------------------------------------------


def _last_sync(engine: Engine, binding: str) -> Any:
    with engine.begin() as conn:
        return account_store.get_binding(conn, binding)["last_sync_at"]


def _wait(condition: Any, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


@contextmanager
def _running(engine: Engine, google: GoogleRemote) -> Iterator[Dispatcher]:
    """A dispatcher whose idle period (30 s) is far longer than any wait below."""
    dispatcher = Dispatcher(
        engine,
        settings=WorkerSettings(poll_interval=3600, concurrency=2, idle_sleep=30.0),
        make_provider=google.make_provider(),
    )
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield dispatcher
    finally:
        stop.set()
        if dispatcher._wake is not None:
            dispatcher._wake.set()
        thread.join(30)


def test_a_notification_marked_by_another_process_wakes_an_idle_postgresql_worker(
    pg_engine: Engine, pg_url: str, google: GoogleRemote
) -> None:
    google.seed(2)
    binding = google.bind(pg_engine)
    with _running(pg_engine, google):
        _wait(lambda: _last_sync(pg_engine, binding) is not None, 20)  # the first sync, then idle
        time.sleep(0.5)
        before = _last_sync(pg_engine, binding)
        receiver = db.open_engine(pg_url)  # the webhook receiver: another process, its own connections
        try:
            with receiver.begin() as conn:
                scheduling.mark_dirty(conn, binding, debounce=0.2)
        finally:
            receiver.dispose()
        took = _wait(lambda: _last_sync(pg_engine, binding) > before, 10)
    assert took < 3, took  # the debounce and the sync, not the 30 s idle period


def test_an_idle_worker_sleeps_only_until_a_notified_binding_is_due(engine: Engine, google: GoogleRemote) -> None:
    """SQLite (no NOTIFY): a binding marked dirty, due after its debounce, is synced then."""
    google.seed(2)
    binding = google.bind(engine)
    with engine.begin() as conn:  # synced before, notified now: due in a second
        conn.execute(update(bindings).values(sync_token=None, next_poll_at=utcnow() + timedelta(hours=1)))
        scheduling.mark_dirty(conn, binding, debounce=1.0)
    started = time.monotonic()
    with _running(engine, google):
        _wait(lambda: _last_sync(engine, binding) is not None, 20)
    assert 0.9 < time.monotonic() - started < 5
