"""What the inbound benchmarks share: the emulator process, the fresh child per size, the figures.

Each provider's script (bench/inbound_google.py, bench/inbound_graph.py) only says how to seed its
emulator, make a provider client, and change N events as another client would; everything measured
is measured here the same way, so the figures of two providers compare.

The emulator runs in its own process, and each size is synced by a fresh child process (the script
itself, with `--child`), so the RSS figures are the sync's own and not the emulator's or the seed's.
The store is a fresh SQLite file per size, or with `--database postgresql` a fresh scratch database
per size on the server at `--pg-url` (dropped after it), so both backends' figures come from an
empty store; `db MB` is then the database's size as the server counts it (pg_database_size).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import socket
import subprocess
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
from _machine import describe  # (the bench's folder is on sys.path: the scripts run from it)

from calsync.providers.base import Provider


class InboundTarget(Protocol):
    """One provider under benchmark."""

    kind: str  # the account kind and the `calsync emulator KIND` name
    token: str  # the bearer token the benchmark acts as

    def default_page_size(self, base: str) -> int:
        """The page size asked for when --page-size is not given (the largest the service allows)."""

    def seed(self, base: str, size: int) -> str:
        """Make `size` events server-side (fast, through the admin surface); returns the calendar id."""

    def provider(self, base: str, page_size: int) -> Provider:
        """A calsync provider client for the benchmark's mailbox."""

    def remote_changes(self, base: str, calendar_id: str, count: int) -> None:
        """Change `count` events as another client would: three in four edited, one in four deleted."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU of this process, every thread of it (the emulator runs in a process of its own)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PhaseTimer:
    """CPU seconds of the sync's three phases, each measured on the thread that runs it
    (time.thread_time): parsing is the provider's listing (HTTP, JSON, mapping to events: the prefetch
    thread), deciding is page_plan.plan_page, storing is the rest of the engine's thread (the page's
    reads and writes, commits, the sweep)."""

    def __init__(self) -> None:
        self.parse = self.decide = self.engine_thread = 0.0

    def install(self, provider: Provider) -> None:
        import calsync.engine.inbound as inbound

        plan_page = inbound.plan_page
        list_changes = provider.list_changes

        def timed_plan(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return plan_page(*args, **kwargs)
            finally:
                self.decide += time.thread_time() - started

        def timed_listing(*args: Any, **kwargs: Any) -> Any:
            pages = iter(list_changes(*args, **kwargs))
            while True:
                started = time.thread_time()
                try:
                    page = next(pages)
                except StopIteration:
                    return
                finally:
                    self.parse += time.thread_time() - started
                yield page

        inbound.plan_page = timed_plan  # type: ignore[assignment]
        provider.list_changes = timed_listing  # type: ignore[method-assign]

    @property
    def store(self) -> float:
        return max(self.engine_thread - self.decide, 0.0)


DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (named bench_inbound_*) for one size; dropped after it
    (bench/scale.py's, which the script's folder on sys.path makes importable)."""
    from scale import scratch_database as named_scratch_database

    from calsync.store.urls import normalise_url

    with named_scratch_database(normalise_url(admin_url), f"bench_inbound_{os.getpid()}_{uuid.uuid4().hex[:8]}") as url:
        yield url


def _db_mb(engine: Any, sqlite_file: Path | None) -> float:
    """The store's size: the SQLite file's, or the PostgreSQL database's as the server counts it."""
    if sqlite_file is not None:
        return sqlite_file.stat().st_size / 2**20
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()) / 2**20


class GcTimer:
    """CPU seconds the cyclic garbage collector took while `on`, on every thread (gc.callbacks): a
    collection runs inside whatever phase allocated, so its share overlaps the three phases'."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.on = False
        self._started: dict[int, float] = {}

    def __call__(self, phase: str, _info: dict[str, Any]) -> None:
        if not self.on:
            return
        thread = threading.get_ident()
        if phase == "start":
            self._started[thread] = time.thread_time()
        elif thread in self._started:
            self.seconds += time.thread_time() - self._started.pop(thread)


def child(
    target: InboundTarget, base_url: str, calendar_id: str, changes: int, page_size: int, db_url: str | None
) -> None:
    """Runs in a fresh process: full sync, N remote changes, incremental sync; prints one JSON line.
    `db_url`: the (fresh) database to sync into; None: a new SQLite file in a temporary folder."""
    import shutil

    from calsync.engine.collector import settle_heap
    from calsync.engine.inbound import sync_binding
    from calsync.store import accounts as account_store
    from calsync.store import events as event_store
    from calsync.store.db import open_engine

    folder = Path(tempfile.mkdtemp(prefix="calsync-bench-")) if db_url is None else None
    sqlite_file = folder / "bench.db" if folder is not None else None
    engine = open_engine(db_url or f"sqlite:///{sqlite_file}")
    with engine.begin() as conn:
        account = account_store.create_account(conn, target.kind, "bench", base_url, {"token": target.token})
        calendar = account_store.create_calendar(conn, "bench")
        binding = account_store.create_binding(conn, calendar, account, calendar_id, "two-way")
    import httpcore  # noqa: F401  (httpx imports it with the first client's transport: in a worker, once at
    # start-up; here it would fall inside the measured sync, 0.1-0.3 s of one-time CPU, no per-event cost)

    settle_heap()  # the interpreter as `calsync sync` and `calsync worker` set it (collector, switch interval)
    rss_before = peak_rss_mb()
    provider = target.provider(base_url, page_size)
    phases = PhaseTimer()
    phases.install(provider)
    collector = GcTimer()
    gc.callbacks.append(collector)
    collector.on = True
    if os.environ.get("CALSYNC_BENCH_PROFILE"):  # a cProfile of the engine's thread, for finding the waste
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    started, cpu_started, thread_started = time.perf_counter(), cpu_seconds(), time.thread_time()
    full = sync_binding(engine, provider, binding)
    full_seconds = time.perf_counter() - started
    full_cpu = cpu_seconds() - cpu_started
    phases.engine_thread = time.thread_time() - thread_started
    collector.on = False
    if os.environ.get("CALSYNC_BENCH_PROFILE"):
        profile.disable()
        profile.dump_stats(os.environ["CALSYNC_BENCH_PROFILE"])
    rss_full = peak_rss_mb()
    assert full.status == "ok", full.message

    target.remote_changes(base_url, calendar_id, changes)
    started = time.perf_counter()
    incremental = sync_binding(engine, provider, binding)
    incremental_seconds = time.perf_counter() - started
    assert incremental.status == "ok", incremental.message
    with engine.begin() as conn:
        stored = event_store.count_events(conn)
    db_mb = _db_mb(engine, sqlite_file)
    engine.dispose()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({
        "events": full.created, "stored": stored, "full_seconds": full_seconds,
        "full_events_per_s": full.created / full_seconds, "full_requests": full.requests, "full_pages": full.pages,
        "incremental_changes": incremental.updated + incremental.deleted + incremental.created,
        "incremental_seconds": incremental_seconds, "incremental_requests": incremental.requests,
        "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb(), "rss_after_full_mb": rss_full,
        "db_mb": db_mb, "page_size": page_size,
        "full_cpu_s": full_cpu, "cpu_ms_per_1000": full_cpu / max(full.created, 1) * 1e6,
        "parse_s": phases.parse, "decide_s": phases.decide, "store_s": phases.store,
        "gc_s": collector.seconds,
    }))


def _wait_until_up(base: str) -> None:
    for _ in range(100):
        try:
            httpx.get(f"{base}/emulator/requests", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the emulator at {base} did not start")


HEADER = (f"{'events':>8} {'full s':>7} {'events/s':>9} {'req':>4} {'pages':>5} {'incr changes':>12} {'incr s':>7} "
          f"{'incr req':>8} {'RSS start MB':>12} {'peak RSS MB':>11} {'db MB':>6} {'CPU s/1000 ev':>13} "
          f"{'parse':>6} {'decide':>6} {'store':>6} {'gc':>5}")


def row(r: dict[str, Any]) -> str:
    """One size's figures. CPU s/1000 ev: user + system CPU of the syncing process during the full sync
    per 1,000 events; parse / decide / store: each phase's share of the three's CPU (PhaseTimer); gc: the
    cyclic garbage collector's share of the full sync's CPU (GcTimer; it runs inside the phases)."""
    phases = r["parse_s"] + r["decide_s"] + r["store_s"] or 1.0
    shares = " ".join(f"{r[k] / phases:>6.0%}" for k in ("parse_s", "decide_s", "store_s"))
    return (f"{r['events']:>8} {r['full_seconds']:>7.1f} {r['full_events_per_s']:>9.0f} {r['full_requests']:>4} "
            f"{r['full_pages']:>5} {r['incremental_changes']:>12} {r['incremental_seconds']:>7.2f} "
            f"{r['incremental_requests']:>8} {r['rss_before_mb']:>12.0f} {r['peak_rss_mb']:>11.0f} {r['db_mb']:>6.0f} "
            f"{r['cpu_ms_per_1000'] / 1000:>13.3f} {shares} {r['gc_s'] / (r['full_cpu_s'] or 1.0):>5.0%}")


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[str | None]:
    """The database one size syncs into: None (the child makes a SQLite file) or a scratch database."""
    if args.database == "sqlite":
        yield None
        return
    with scratch_database(args.pg_url) as url:
        yield url


def main(target: InboundTarget, script: str, doc: str | None) -> None:
    """The benchmark's command line: start the emulator, then per size reset, seed, sync in a child."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--page-size", type=int, default=0, help="default: the largest page the service allows")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the store: a fresh SQLite file, or a fresh scratch database on --pg-url")
    parser.add_argument("--pg-url", default=os.environ.get("CALSYNC_TEST_PG_URL") or DEFAULT_PG,
                        help="a PostgreSQL server to make scratch databases on (default $CALSYNC_TEST_PG_URL)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="sync each size this many times, each from a fresh seed, database and process, and "
                             "print the median CPU per 1,000 events with its range (a shared machine's speed "
                             "swings by 15-30%% from minute to minute)")
    parser.add_argument("--child", nargs=2, metavar=("BASE_URL", "CALENDAR_ID"), help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)  # the child's store (none: a SQLite file)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, not {args.repeat}")
    if args.child:
        child(target, args.child[0], args.child[1], args.changes, args.page_size, args.db_url)
        return

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen(
        [sys.executable, "-m", "calsync.cli", "emulator", target.kind, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(base)
        page_size = args.page_size or target.default_page_size(base)
        print(f"{target.kind} emulator, page size {page_size}, {args.changes} remote changes, "
              f"{args.database}", flush=True)
        print(describe(), flush=True)
        print(HEADER, flush=True)
        for size in (int(s) for s in args.sizes.split(",")):
            cpu: list[float] = []
            for _ in range(args.repeat):
                httpx.post(f"{base}/emulator/reset").raise_for_status()
                calendar_id = target.seed(base, size)
                command = [sys.executable, script, "--child", base, calendar_id, "--changes", str(args.changes),
                           "--page-size", str(page_size)]
                with _store(args) as db_url:
                    out = subprocess.run(command + (["--db-url", db_url] if db_url else []),
                                         capture_output=True, text=True, env=dict(os.environ))
                if out.returncode:
                    raise SystemExit(f"the {size}-event run failed:\n{out.stderr[-3000:]}")
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                cpu.append(figures["cpu_ms_per_1000"] / 1000)
                print(row(figures), flush=True)
            if len(cpu) > 1:
                print(f"{size:>8} events, {len(cpu)} runs: CPU s/1000 ev median {statistics.median(cpu):.3f} "
                      f"(min {min(cpu):.3f}, max {max(cpu):.3f})", flush=True)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
