"""Quiet-poll bench: the worker CPU one quiet poll costs, measured in this process.

N small Google calendars (a few events each, five calendars an account) on a scratch PostgreSQL
database, bound and synced once; then the emulator (its own process, bench/scale.py's) answers every
request after --latency-ms, every binding is made due at once, and one poll cycle runs through the
service's own worker pool (service.app.WorkerPool: a Dispatcher with --concurrency sync threads, the
NOTIFY listener, the metrics observer, the webhook delivery thread), as `calsync worker` runs it
(engine.collector.settle_heap included). Nothing changed remotely, so every poll is quiet. Printed per
cycle: wall time, polls/s, this process's CPU (resource.getrusage over the cycle) per poll, SQL
statements per poll and provider requests per poll.

    python bench/quiet_poll.py [--bindings 1500] [--concurrency 32] [--latency-ms 100] [--cycles 3]

The CPU figure is what bench/scale.py's `ms/poll` column measures in a `calsync worker` process,
without that bench's big calendar and notification loader (so it is a little lower), on a scale that
runs in a minute or two. Wall time on this shared 2-core machine is noise; CPU and counts are not.
`--profile FILE` writes a cProfile of every sync thread over the last cycle (pstats format).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, text, update  # noqa: E402

from bench._machine import describe  # noqa: E402
from bench.scale import DEFAULT_PG, Api, Emulator, bind, scratch_database  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def seed(emulator: Emulator, api: Api, bindings: int, events: int) -> list[tuple[str, str]]:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).isoformat().replace("+00:00", "Z")

    def make(index: int) -> tuple[str, str]:
        user = f"user-{index // 5:05d}"
        calendar = api.new_calendar(user, f"small {index}")
        emulator.admin(
            "POST", f"/calendars/{calendar}/seed", json={"count": events, "start": start, "days": 28, "seed": index + 1}
        )
        return user, calendar

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(make, range(bindings)))


class Cycle:
    """Counts the syncs the pool reports until `expected` have come."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = 0
        self.expected = 0
        self.statuses: dict[str, int] = {}
        self.all_done = threading.Event()

    def start(self, expected: int) -> None:
        with self.lock:
            self.done, self.expected, self.statuses = 0, expected, {}
            self.all_done.clear()

    def synced(self, status: str) -> None:
        with self.lock:
            self.done += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if self.done >= self.expected:
                self.all_done.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bindings", type=int, default=1500)
    parser.add_argument("--events", type=int, default=3, help="events in each calendar")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=3, help="poll cycles measured (after the first sync)")
    parser.add_argument("--pg-url", default=os.environ.get("CALSYNC_TEST_PG_URL") or DEFAULT_PG)
    parser.add_argument("--profile", help="write a cProfile of the sync threads over the last cycle here")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--switch-interval", type=float, help="sys.setswitchinterval after settle_heap's (seconds; to compare)"
    )
    args = parser.parse_args()

    from cryptography.fernet import Fernet

    os.environ["CALSYNC_SECRET_KEY"] = Fernet.generate_key().decode()
    from calsync.engine.collector import settle_heap
    from calsync.engine.scheduler import WorkerSettings
    from calsync.service.app import WorkerPool
    from calsync.service.metrics import Metrics
    from calsync.store.db import open_engine
    from calsync.store.schema import bindings

    folder = Path(tempfile.mkdtemp(prefix="calsync-bench-quiet-"))
    emulator = Emulator("google", folder)
    try:
        api = Api(emulator)
        t0 = time.monotonic()
        layout = seed(emulator, api, args.bindings, args.events)
        print(
            f"calsync quiet-poll bench: {args.bindings} google calendars x {args.events} events over "
            f"{(args.bindings + 4) // 5} accounts, {args.concurrency} sync threads in this process, "
            f"{args.latency_ms} ms a request; PostgreSQL (seeded in {time.monotonic() - t0:.1f}s)",
            flush=True,
        )
        print(f"  {describe()}", flush=True)
        name = f"calsync_quietpoll_{os.getpid()}"
        with scratch_database(args.pg_url, name) as db_url:
            engine = open_engine(db_url, args.concurrency)
            ids = bind(engine, emulator, layout, {})
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
            statements = [0]

            def counted(*_args: Any) -> None:
                statements[0] += 1

            event.listen(engine, "before_cursor_execute", counted)
            cycle = Cycle()
            metrics = Metrics()

            def on_sync(result: Any, dirty_at: Any, finished: Any) -> None:
                metrics.sync_done(result, dirty_at, finished)
                cycle.synced(result.status)

            settings = WorkerSettings(poll_interval=3600, lease_seconds=60, concurrency=args.concurrency)
            pool = WorkerPool(engine, settings, {}, metrics, count=args.concurrency)
            settle_heap()
            if args.switch_interval is not None:
                sys.setswitchinterval(args.switch_interval)
            cycle.start(len(ids))
            pool.start()
            assert pool.dispatcher is not None
            pool.dispatcher.worker.on_sync = on_sync
            try:
                if not cycle.all_done.wait(args.timeout):
                    raise RuntimeError(f"first sync: {cycle.done} of {len(ids)} in {args.timeout:.0f}s")
                print(f"  first sync of every binding: {cycle.statuses}", flush=True)
                time.sleep(1.0)  # the dispatcher goes idle
                emulator.admin("POST", "/faults", json={"latency_ms": args.latency_ms})
                print(
                    f"  {'cycle':>5} {'wall s':>7} {'polls/s':>7} {'CPU s':>6} {'ms/poll':>7} "
                    f"{'SQL/poll':>8} {'req/poll':>8}"
                )
                results: list[float] = []
                for n in range(args.cycles):
                    profiler = _profile_threads(pool) if args.profile and n == args.cycles - 1 else None
                    emulator.admin("DELETE", "/requests")
                    cycle.start(len(ids))
                    sql_before, cpu_before = statements[0], cpu_seconds()
                    started = time.monotonic()
                    with engine.begin() as conn:
                        conn.execute(update(bindings).values(next_poll_at=datetime.now(UTC)))
                    pool.wake.set()
                    if not cycle.all_done.wait(args.timeout):
                        raise RuntimeError(f"poll cycle: {cycle.done} of {len(ids)} in {args.timeout:.0f}s")
                    wall = time.monotonic() - started
                    cpu = cpu_seconds() - cpu_before
                    sql = statements[0] - sql_before - 1  # less the bench's own UPDATE
                    requests = len(emulator.requests())
                    if profiler is not None:
                        _save_profile(profiler, args.profile)
                    if cycle.statuses != {"ok": len(ids)}:
                        raise RuntimeError(f"not every poll succeeded: {cycle.statuses}")
                    results.append(1000 * cpu / len(ids))
                    print(
                        f"  {n + 1:>5} {wall:7.1f} {len(ids) / wall:7.0f} {cpu:6.2f} {1000 * cpu / len(ids):7.2f} "
                        f"{sql / len(ids):8.2f} {requests / len(ids):8.2f}",
                        flush=True,
                    )
                    time.sleep(0.5)
                best = min(results)
                print(
                    f"quiet poll: {best:.2f} ms of worker CPU a poll (best of {len(results)} cycles; median "
                    f"{sorted(results)[len(results) // 2]:.2f}); at 10,000 calendars that is "
                    f"{best * 10:.0f} s of CPU a cycle on one interpreter"
                )
            finally:
                pool.stop()
                deadline = time.monotonic() + 5  # the NOTIFY listener notices the stop within a second
                while time.monotonic() < deadline and any(
                    t.name == "calsync-dirty-listener" for t in threading.enumerate()
                ):
                    time.sleep(0.1)
                engine.dispose()
    finally:
        emulator.stop()
        shutil.rmtree(folder, ignore_errors=True)


class _ThreadProfiles:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.profiles: list[cProfile.Profile] = []
        self.active = True


def _profile_threads(pool: Any) -> _ThreadProfiles:
    """Profile every sync job from now on: each job runs under a cProfile of its own (collected)."""
    profiles = _ThreadProfiles()
    dispatcher = pool.dispatcher
    original = dispatcher._run

    def run(job: Any, arg: Any) -> None:
        if not profiles.active:
            original(job, arg)
            return
        profiler = cProfile.Profile(time.thread_time)  # CPU time of the thread, not its waits
        with profiles.lock:
            profiles.profiles.append(profiler)
        profiler.runcall(original, job, arg)

    dispatcher._run = run
    profiles.original = original  # type: ignore[attr-defined]
    profiles.dispatcher = dispatcher  # type: ignore[attr-defined]
    return profiles


def _save_profile(profiles: _ThreadProfiles, path: str) -> None:
    profiles.active = False
    profiles.dispatcher._run = profiles.original  # type: ignore[attr-defined]
    with profiles.lock:
        stats = pstats.Stats(profiles.profiles[0])
        for profiler in profiles.profiles[1:]:
            stats.add(profiler)
    stats.dump_stats(path)
    print(f"  profile of {len(profiles.profiles)} sync jobs written to {path}")


if __name__ == "__main__":
    main()
