"""Notification latency benchmark: a change on the Google emulator -> push notification -> webhook
receiver -> worker sync -> store commit (-> Zoom meeting update), under a steady load.

200 bound calendars (20 users x 10 calendars, a few seeded events each, one account per user), every
binding with a live, confirmed push channel whose address is the service below, and a Zoom meeting on
one event in each of 50 calendars. Then, for --seconds at --rate changes/s, a loader thread renames a
random event of a random calendar ("bench <n>") through the Calendar API, as another Google client
would (a --conference-share of the changes is aimed at events that carry a meeting, so the conference
figures have a sample worth the name). Prints p50/p95/p99/max from the change to the store commit and
to the conference update, notifications received vs syncs run, and whether the target (p99 < 1 s at
20 changes/s) is met.

The Google and Zoom emulators run in their own processes; the calsync service (the FastAPI app on
loopback and a WorkerPool, SQLite file by default, `--db URL` for PostgreSQL with `--workers N`) runs
in this process, so what this process spends is the service's own work (plus a 20/s loader thread).

Times: a change starts at time.time() just before its PATCH request. It is committed when the
transaction that wrote its title into `events` has committed: SQLAlchemy engine events (before_execute
picks the title out of the UPDATE, commit, then checkin right after COMMIT returned) stamp time.time()
in this process. A conference is updated when the transaction that stores the conference record's new
spec (with last_synced_at, written after Zoom answered the PATCH) has committed, stamped the same way.
A change overtaken by a later change to the same event before a sync saw it counts as seen when the
later one is committed. All clocks are this machine's wall clock; everything is on loopback.

    python bench/notify_latency.py [--seconds 20] [--rate 20] [--db URL --workers N] [--debounce S]
                                   [--profile FILE] [--failing-webhook error|hang]

`--failing-webhook` adds an outbound webhook subscription (every change kind of the calendars' user) to
a receiver in its own process that always fails: `error` answers 500 at once, `hang` holds every
request until calsync's timeout. Its retries run at a short schedule (0.2 s doubling to 1 s, never
giving up during the run), so the service's delivery thread is busy failing throughout the load: the
latency figures should match a run without it (sync never waits for webhooks).

`--db` must name an empty database (the benchmark adds 20 accounts and 200 bindings to it). At the
defaults it runs in about 40 s on two cores and stops the emulators it started whatever happens.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, event, func, select

from calsync.conferencing.zoom import ZoomAdapter
from calsync.emulators.server import serve_in_thread
from calsync.engine.conferences import ConferenceEngine
from calsync.engine.pool import ProviderPool
from calsync.engine.scheduler import WorkerSettings
from calsync.service.app import WorkerPool, create_app
from calsync.service.metrics import Metrics
from calsync.store import accounts as account_store
from calsync.store.db import normalise_url, open_engine
from calsync.hooks import signing, urls
from calsync.statuses import CHANGE_KINDS
from calsync.store import hooks as hook_store
from calsync.store import users
from calsync.store.schema import (
    bindings,
    channels,
    conference_outbox,
    conferences,
    event_links,
    events,
    webhook_deliveries,
)

TITLE = re.compile(r"^bench (\d+)$")
TARGET_P99_S = 1.0
TARGET_RATE = 20.0
MAX_SECONDS = 120.0
MAX_RATE = 50.0  # the emulator keeps the last 10,000 deliveries; the load stays well inside that


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    """`calsync emulator KIND` in its own process on a free loopback port."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / f"{kind}-emulator.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "calsync.cli", "emulator", kind, "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=self._log,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{kind} emulator exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                httpx.get(f"{self.url}/emulator/requests", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} emulator did not answer within 30 s") from None
                time.sleep(0.1)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/emulator{path}", timeout=60, **kwargs).raise_for_status()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


FAILING_RECEIVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
hang = sys.argv[2] == "hang"
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        if hang:
            time.sleep(3600)
        self.send_response(500)
        self.send_header("content-length", "4")
        self.end_headers()
        self.wfile.write(b"down")
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
open(sys.argv[1], "w").write(str(server.server_address[1]))
server.serve_forever()
"""


def thread_cpu() -> str:
    """CPU seconds (user + system) of this process's threads so far, by kind: the sync workers, the
    webhook delivery threads, everything else."""
    import psutil

    names = {t.native_id: t.name for t in threading.enumerate()}
    spent: Counter[str] = Counter()
    for t in psutil.Process().threads():
        name = names.get(t.id, "")
        kind = ("webhooks" if name.startswith("calsync-webhook") else
                "sync workers" if name.startswith("calsync-worker") else "other")
        spent[kind] += t.user_time + t.system_time
    return ", ".join(f"{kind} {seconds:.1f} s" for kind, seconds in sorted(spent.items()))


def failing_receiver(folder: Path, mode: str) -> tuple[subprocess.Popen[bytes], str]:
    """A webhook receiver in its own process that always fails; the service may send to it (loopback
    switch) and retries it at a short schedule, for the whole run."""
    port_file = folder / "failing-receiver.port"
    process = subprocess.Popen([sys.executable, "-c", FAILING_RECEIVER, str(port_file), mode])
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the failing webhook receiver did not start")
        time.sleep(0.05)
    os.environ[urls.ALLOW_LOOPBACK_ENV] = "1"
    os.environ.update({"CALSYNC_WEBHOOK_RETRY_BASE": "0.2", "CALSYNC_WEBHOOK_RETRY_CEILING": "1",
                       "CALSYNC_WEBHOOK_RETRY_FOR": "3600"})
    return process, f"http://127.0.0.1:{port_file.read_text()}/hook"


# --- commit clock ------------------------------------------------------------------------------


class CommitClock:
    """When each bench title reached the store, stamped in this process just after its COMMIT.

    before_execute notes the titles an UPDATE of `events` (batched rows) or `conferences` (the new
    spec) writes, against the DBAPI connection; `commit` moves them to 'committing'; the pool's
    `checkin`, which follows the COMMIT on the same thread, stamps them. A rollback forgets them."""

    def __init__(self, engine: Engine) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, list[tuple[str, int]]] = {}
        self._committing: dict[int, list[tuple[str, int]]] = {}
        self.events: dict[int, float] = {}  # change number -> first commit of "bench <n>" into events
        self.conferences: dict[int, float] = {}  # change number -> first commit of it into a conference spec
        self.conference_stamps: dict[int, float] = {}  # change number -> the record's last_synced_at
        event.listen(engine, "before_execute", self._before_execute)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)
        event.listen(engine, "checkin", self._checkin)

    def _before_execute(self, conn: Any, clause: Any, multiparams: Any, params: Any, _options: Any) -> None:
        if not getattr(clause, "is_update", False):
            return
        table = getattr(getattr(clause, "table", None), "name", None)
        found: list[tuple[str, int]] = []
        if table == "events":
            rows = multiparams if multiparams else ([params] if params else [])
            for row in rows:
                match = TITLE.match(row.get("title") or "") if isinstance(row, dict) else None
                if match:
                    found.append(("event", int(match.group(1))))
        elif table == "conferences":
            values = clause.compile(dialect=conn.dialect).params
            spec = values.get("spec")
            match = TITLE.match(spec.get("title") or "") if isinstance(spec, dict) else None
            if match:
                found.append(("conference", int(match.group(1))))
                stamp = values.get("last_synced_at")
                if stamp is not None:
                    with self._lock:
                        self.conference_stamps.setdefault(int(match.group(1)), stamp.timestamp())
        if found:
            key = id(conn.connection.dbapi_connection)
            with self._lock:
                self._open.setdefault(key, []).extend(found)

    def _commit(self, conn: Any) -> None:
        key = id(conn.connection.dbapi_connection)
        with self._lock:
            writes = self._open.pop(key, None)
            if writes:
                self._committing.setdefault(key, []).extend(writes)

    def _rollback(self, conn: Any) -> None:
        with self._lock:
            self._open.pop(id(conn.connection.dbapi_connection), None)

    def _checkin(self, dbapi_connection: Any, _record: Any) -> None:
        now = time.time()
        with self._lock:
            self._open.pop(id(dbapi_connection), None)
            for kind, number in self._committing.pop(id(dbapi_connection), None) or ():
                (self.events if kind == "event" else self.conferences).setdefault(number, now)


# --- optional profile of this process's threads --------------------------------------------------


class ThreadProfiles:
    """cProfile for every thread started after install() (workers, the service's server thread; not
    the wake timers, whose class has its own run); each profile is stopped by its own thread, then
    all are merged."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self.names: list[str] = []
        self._original = threading.Thread.run

    def install(self) -> None:
        original, profiles, names = self._original, self.profiles, self.names

        def run(self: threading.Thread) -> None:
            if self.name == "bench-loader":  # the load is not the service's work
                original(self)
                return
            profile = cProfile.Profile()
            profile.enable()
            try:
                original(self)
            finally:
                profile.disable()
                profiles.append(profile)
                names.append(self.name)

        threading.Thread.run = run  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        threading.Thread.run = self._original  # type: ignore[method-assign]

    def dump(self, path: str) -> str:
        if not self.profiles:
            return "no finished thread was profiled"
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        stats.dump_stats(path)
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)
        kinds = Counter(re.sub(r"[-_]?\d+$", "", n) for n in self.names)
        return f"threads profiled: {dict(kinds)}\n" + out.getvalue()


# --- setup -------------------------------------------------------------------------------------


@dataclass
class Target:
    """One remote event the loader may change, and what the store knows of it."""

    calendar: int
    remote_calendar: str
    user: str
    remote_id: str
    event_id: str
    conference: bool = False


@dataclass
class Change:
    n: int
    target: Target
    started: float = 0.0
    answered: float = 0.0
    status: int = 0


def build_remote(google: Emulator, users: int, per_user: int, events_each: int) -> list[tuple[str, str]]:
    """Secondary calendars for each user, seeded server-side; returns (user token, calendar id)."""
    made: list[tuple[str, str]] = []
    with httpx.Client(base_url=f"{google.url}/calendar/v3", timeout=30) as api:
        for u in range(users):
            user = f"bench-user-{u:02d}"
            for c in range(per_user):
                answer = api.post("/calendars", json={"summary": f"{user} calendar {c}"},
                                  headers={"Authorization": f"Bearer {user}"}).raise_for_status()
                calendar_id = answer.json()["id"]
                google.admin("POST", f"/calendars/{calendar_id}/seed", json={
                    "count": events_each, "start": "2027-03-01T00:00:00Z", "days": 30, "seed": len(made) + 1})
                made.append((user, calendar_id))
    return made


def bind_all(engine: Engine, google_url: str, remote: list[tuple[str, str]]) -> dict[str, int]:
    """One account per user, one local calendar and two-way binding per remote calendar."""
    accounts: dict[str, str] = {}
    binding_index: dict[str, int] = {}
    with engine.begin() as conn:
        for index, (user, calendar_id) in enumerate(remote):
            if user not in accounts:
                accounts[user] = account_store.create_account(conn, "google", user, google_url, {"token": user})
            local = account_store.create_calendar(conn, f"{user}:{calendar_id}")
            binding_index[account_store.create_binding(conn, local, accounts[user], calendar_id, "two-way")] = index
    return binding_index


def readiness(engine: Engine) -> tuple[int, int]:
    """(bindings with a sync token, bindings with an active and confirmed channel)."""
    with engine.connect() as conn:
        tokens = conn.execute(select(func.count()).select_from(bindings)
                              .where(bindings.c.sync_token.is_not(None))).scalar_one()
        live = conn.execute(select(func.count(func.distinct(channels.c.binding_id)))
                            .where(channels.c.state == "active", channels.c.confirmed_at.is_not(None))).scalar_one()
    return int(tokens), int(live)


def quiet(engine: Engine) -> bool:
    """No binding dirty or leased and no conference work pending."""
    with engine.connect() as conn:
        busy = conn.execute(select(func.count()).select_from(bindings).where(
            (bindings.c.dirty_at.is_not(None)) | (bindings.c.lease_owner.is_not(None)))).scalar_one()
        backlog = conn.execute(select(func.count()).select_from(conference_outbox)
                               .where(conference_outbox.c.status == "pending")).scalar_one()
    return busy == 0 and backlog == 0


def wait_until(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - started


def load_targets(engine: Engine, binding_index: dict[str, int], remote: list[tuple[str, str]]) -> list[list[Target]]:
    """Per calendar (in `remote` order), its synced events with their remote ids."""
    per_calendar: list[list[Target]] = [[] for _ in remote]
    with engine.connect() as conn:
        rows = conn.execute(
            select(event_links.c.binding_id, event_links.c.remote_id, events.c.id)
            .join(events, events.c.id == event_links.c.event_id)
            .where(events.c.deleted.is_(False), events.c.recurring_event_id.is_(None))
            .order_by(event_links.c.binding_id, event_links.c.remote_id)
        ).all()
    for binding_id, remote_id, event_id in rows:
        index = binding_index[binding_id]
        user, calendar_id = remote[index]
        per_calendar[index].append(Target(index, calendar_id, user, remote_id, event_id))
    return per_calendar


# --- the load ----------------------------------------------------------------------------------


def run_load(google_url: str, per_calendar: list[list[Target]], with_conference: list[Target], rate: float,
             seconds: float, conference_share: float, seed: int) -> tuple[list[Change], float]:
    """Steady changes from one thread: change n is due at n / rate; returns the changes and the
    worst lag behind schedule. Bounded by count (rate x seconds) and by time (seconds + 5)."""
    changes: list[Change] = []
    lag = [0.0]
    rng = random.Random(seed)
    calendars = [c for c in per_calendar if c]

    def loader() -> None:
        total = int(rate * seconds)
        with httpx.Client(base_url=f"{google_url}/calendar/v3", timeout=10) as api:
            began = time.monotonic()
            for n in range(1, total + 1):
                due = began + (n - 1) / rate
                now = time.monotonic()
                if now < due:
                    time.sleep(due - now)
                else:
                    lag[0] = max(lag[0], now - due)
                if time.monotonic() - began > seconds + 5:
                    break
                if with_conference and rng.random() < conference_share:
                    target = rng.choice(with_conference)
                else:
                    target = rng.choice(rng.choice(calendars))
                change = Change(n, target)
                change.started = time.time()
                answer = api.patch(f"/calendars/{target.remote_calendar}/events/{target.remote_id}",
                                   json={"summary": f"bench {n}"}, headers={"Authorization": f"Bearer {target.user}"})
                change.answered = time.time()
                change.status = answer.status_code
                changes.append(change)

    thread = threading.Thread(target=loader, name="bench-loader", daemon=True)
    thread.start()
    thread.join(seconds + 30)
    return changes, lag[0]


def first_commits(changes: list[Change], commits: dict[int, float]) -> dict[int, tuple[float, bool]]:
    """Change n -> (the first commit that holds it or a later change to the same event, whether that
    commit is n's own). A sync lists the current state, so an event changed twice before its sync
    shows only the second title: the first change is seen when the second one is committed."""
    by_event: dict[str, list[int]] = {}
    for change in changes:
        by_event.setdefault(change.target.event_id, []).append(change.n)
    out: dict[int, tuple[float, bool]] = {}
    for numbers in by_event.values():
        best: tuple[float, int] | None = None
        for n in reversed(numbers):
            stamp = commits.get(n)
            if stamp is not None and (best is None or stamp < best[0]):
                best = (stamp, n)
            if best is not None:
                out[n] = (best[0], best[1] == n)
    return out


# --- figures -----------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def figures(values: list[float]) -> str:
    if not values:
        return "no samples"
    ms = [v * 1000 for v in values]
    return (f"p50 {percentile(ms, 50):6.0f} ms  p95 {percentile(ms, 95):6.0f} ms  p99 {percentile(ms, 99):6.0f} ms"
            f"  max {max(ms):6.0f} ms  (n={len(ms)})")


def counter_values(counter: Any) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[tuple(sample.labels.values())] = sample.value
    return out


def delta(after: dict[tuple[str, ...], float], before: dict[tuple[str, ...], float]) -> dict[str, int]:
    return {"/".join(k): int(v - before.get(k, 0.0)) for k, v in sorted(after.items()) if v - before.get(k, 0.0)}


def notification_times(google: Emulator, changes: list[Change]) -> tuple[dict[int, float], str]:
    """Change -> the receiver's answer to its notification (the emulator logs each delivery after the
    answer). Each committed change queues exactly one message per channel of its calendar, delivered
    in order, so the k-th change of a calendar during the load pairs with its k-th message."""
    channel_of = {c["calendarId"]: c["id"] for c in google.admin("GET", "/channels").json()["channels"]}
    deliveries: dict[str, list[dict[str, Any]]] = {}
    outcomes: Counter[str] = Counter()
    for d in google.admin("GET", "/deliveries").json()["deliveries"]:
        outcomes[d["outcome"]] += 1
        if d["state"] == "exists" and d["outcome"] in ("delivered", "failed", "gave_up"):
            deliveries.setdefault(d["channelId"], []).append(d)
    seen: Counter[str] = Counter()
    out: dict[int, float] = {}  # change number -> when the receiver's answer to its message came back
    unpaired = 0
    for change in changes:
        channel = channel_of.get(change.target.remote_calendar)
        k = seen[channel or ""]
        seen[channel or ""] += 1
        answered = deliveries.get(channel or "", [])
        if channel is None or k >= len(answered):
            unpaired += 1
            continue
        out[change.n] = answered[k]["epoch"]
    note = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    if unpaired:
        note += f"; {unpaired} changes without a paired delivery"
    return out, note


def zoom_topics(zoom: Emulator, meeting_ids: dict[str, str]) -> dict[str, str | None]:
    """event id -> the Zoom meeting's topic, through Zoom's own API."""
    token = httpx.post(f"{zoom.url}/oauth/token", params={"grant_type": "account_credentials", "account_id": "bench"},
                       auth=("bench", "secret")).raise_for_status().json()["access_token"]
    out: dict[str, str | None] = {}
    with httpx.Client(base_url=f"{zoom.url}/v2", headers={"Authorization": f"Bearer {token}"}) as api:
        for event_id, meeting in meeting_ids.items():
            answer = api.get(f"/meetings/{meeting}")
            out[event_id] = answer.json().get("topic") if answer.status_code == 200 else None
    return out


# --- main --------------------------------------------------------------------------------------


@contextmanager
def phase(name: str) -> Iterator[None]:
    print(f"  {name} ...", end="", flush=True)
    started = time.monotonic()
    yield
    print(f" {time.monotonic() - started:.1f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help=f"load duration (max {MAX_SECONDS:g})")
    parser.add_argument("--rate", type=float, default=20.0, help=f"changes per second (max {MAX_RATE:g})")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--calendars-per-user", type=int, default=10)
    parser.add_argument("--events", type=int, default=5, help="seeded events per calendar")
    parser.add_argument("--conference-calendars", type=int, default=50, help="calendars with one Zoom meeting")
    parser.add_argument("--conference-share", type=float, default=0.2,
                        help="share of changes aimed at events with a meeting (the rest: a random event of a "
                             "random calendar)")
    parser.add_argument("--db", help="SQLAlchemy URL of an empty database (default: a fresh SQLite file)")
    parser.add_argument("--workers", type=int, default=1, help="worker threads (keep 1 on SQLite)")
    parser.add_argument("--debounce", type=float, default=WorkerSettings().debounce,
                        help="seconds a notified binding waits before its sync (the service's default unless given)")
    parser.add_argument("--drain", type=float, default=30.0, help="how long to wait for the last changes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", metavar="FILE", help="cProfile this process's threads; stats to FILE")
    parser.add_argument("--failing-webhook", choices=("off", "error", "hang"), default="off",
                        help="an outbound webhook subscription whose receiver always fails (500, or hangs)")
    args = parser.parse_args()
    if not 0 < args.seconds <= MAX_SECONDS or not 0 < args.rate <= MAX_RATE:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:g}] and --rate in (0, {MAX_RATE:g}]")
    if args.users < 1 or args.calendars_per_user < 1 or args.events < 1 or args.workers < 1:
        parser.error("--users, --calendars-per-user, --events and --workers must be at least 1")
    if not 0 <= args.debounce <= 5:
        parser.error("--debounce must be in [0, 5]")
    if not 0 <= args.conference_share <= 1:
        parser.error("--conference-share must be in [0, 1]")

    folder = Path(tempfile.mkdtemp(prefix="calsync-bench-notify-"))
    url = normalise_url(args.db) if args.db else f"sqlite:///{folder / 'bench.db'}"
    profiles = ThreadProfiles() if args.profile else None
    emulators: list[Emulator] = []
    receiver: subprocess.Popen[bytes] | None = None
    pool: WorkerPool | None = None
    server = None
    engine: Engine | None = None
    try:
        google = Emulator("google", folder)
        emulators.append(google)
        zoom = Emulator("zoom", folder)
        emulators.append(zoom)
        engine = open_engine(url)
        with engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(bindings)).scalar_one():
                raise SystemExit(f"{url}: the database already has bindings; give the benchmark an empty one")
        clock = CommitClock(engine)
        zoom_env = {
            "CALSYNC_ZOOM_BASE_URL": f"{zoom.url}/v2", "CALSYNC_ZOOM_OAUTH_URL": f"{zoom.url}/oauth/token",
            "CALSYNC_ZOOM_ACCOUNT_ID": "bench", "CALSYNC_ZOOM_CLIENT_ID": "bench",
            "CALSYNC_ZOOM_CLIENT_SECRET": "secret",
        }
        worker_zoom = ZoomAdapter.from_settings(zoom_env)
        assert worker_zoom is not None
        backend = engine.dialect.name
        count = args.users * args.calendars_per_user
        print(f"calsync notification latency ({os.cpu_count()} CPUs): {count} calendars "
              f"({args.users} users x {args.calendars_per_user}), "
              f"{args.events} events each; {args.workers} worker thread(s) on {backend}"
              f"{' (file)' if backend == 'sqlite' else ''}, debounce {args.debounce * 1000:.0f} ms; "
              "emulators in their own processes")
        if backend == "sqlite" and args.workers > 1:
            print("  note: SQLite serves one writer; more than one worker thread only adds lock waits")

        print("setup")
        with phase(f"{count} calendars made and seeded on the emulator"):
            remote = build_remote(google, args.users, args.calendars_per_user, args.events)
            binding_index = bind_all(engine, google.url, remote)

        if args.failing_webhook != "off":
            receiver, hook_url = failing_receiver(folder, args.failing_webhook)
            with engine.begin() as conn:
                hook_store.create_subscription(conn, users.default_owner(conn), hook_url, list(CHANGE_KINDS), None,
                                               signing.new_secret())
            print(f"  an outbound webhook to {hook_url}, which always fails ({args.failing_webhook})")

        if profiles:
            profiles.install()
        metrics = Metrics()
        settings = WorkerSettings(debounce=args.debounce)
        pool = WorkerPool(engine, settings, {"zoom": worker_zoom}, metrics, count=args.workers)
        server = serve_in_thread(create_app(engine, metrics, wake=pool.wake, debounce=settings.debounce))
        settings.public_url = server.url
        with phase(f"service on {server.url}: first syncs, channels watched and confirmed"):
            pool.start()
            pool.wake.set()
            wait_until(lambda: readiness(engine) == (count, count), 120, "every binding's token and channel")
            google.admin("POST", "/push/flush", json={"timeout": 30})
            wait_until(lambda: quiet(engine), 60, "the service to settle")

        per_calendar = load_targets(engine, binding_index, remote)
        step = max(1, count // max(1, args.conference_calendars))
        with_conference = [per_calendar[i][0] for i in range(0, count, step)
                           if per_calendar[i]][:args.conference_calendars]
        with phase(f"{len(with_conference)} Zoom meetings made with ConferenceEngine.create, on their events"):
            creator_zoom = ZoomAdapter.from_settings(zoom_env)
            assert creator_zoom is not None
            providers = ProviderPool(engine)
            creator = ConferenceEngine(engine, {"zoom": creator_zoom}, providers)
            for target in with_conference:
                creator.create(target.event_id, "zoom")
                target.conference = True
            providers.close()
            creator_zoom.close()
            google.admin("POST", "/push/flush", json={"timeout": 30})
            time.sleep(settings.debounce + settings.idle_sleep)
            wait_until(lambda: quiet(engine), 60, "the write-back echoes to settle")
        with engine.connect() as conn:
            meeting_ids = {r.event_id: r.conference_id for r in conn.execute(
                select(conferences.c.event_id, conferences.c.conference_id).where(conferences.c.state == "active"))}

        for emulator in emulators:
            emulator.admin("DELETE", "/requests")
        google.admin("DELETE", "/deliveries")
        notifications_before = counter_values(metrics.notifications)
        syncs_before = counter_values(metrics.syncs)
        histogram_before = _histogram(metrics)

        print(f"load: {args.rate:g} changes/s for {args.seconds:g}s, "
              f"{args.conference_share:.0%} of them aimed at the {len(with_conference)} events with a meeting")
        load_started = time.monotonic()
        changes, lag = run_load(google.url, per_calendar, with_conference, args.rate, args.seconds,
                                args.conference_share, args.seed)
        load_seconds = time.monotonic() - load_started
        ok_changes = [c for c in changes if c.status == 200]
        conference_changes = [c for c in ok_changes if c.target.conference]

        def all_seen() -> bool:
            return (len(first_commits(ok_changes, clock.events)) == len(ok_changes)
                    and len(first_commits(conference_changes, clock.conferences)) == len(conference_changes))

        try:
            drained = wait_until(all_seen, args.drain, "the last changes", step=0.05)
            drain_note = f"all seen {drained:.1f}s after the last change"
        except RuntimeError:
            drain_note = f"NOT all seen {args.drain:g}s after the last change"
        google.admin("POST", "/push/flush", json={"timeout": 10})
        time.sleep(settings.debounce + 0.5)  # let the last notifications' syncs finish before counting
        try:
            wait_until(lambda: quiet(engine), 15, "the service to settle")
        except RuntimeError:
            drain_note += "; the service was still busy 15 s later"

        notifications = delta(counter_values(metrics.notifications), notifications_before)
        syncs = delta(counter_values(metrics.syncs), syncs_before)
        histogram_after = _histogram(metrics)
        google_log = google.admin("GET", "/requests").json()["requests"]
        zoom_log = zoom.admin("GET", "/requests").json()["requests"]
        notified, delivery_note = notification_times(google, ok_changes)

        # --- store and Zoom cross-checks -------------------------------------------------------
        last_change: dict[str, Change] = {}
        for change in ok_changes:
            last_change[change.target.event_id] = change
        with engine.connect() as conn:
            final = {r.id: (r.title, r.updated_at) for r in conn.execute(
                select(events.c.id, events.c.title, events.c.updated_at).where(events.c.id.in_(list(last_change))))}
        title_ok = sum(final.get(e, ("", None))[0] == f"bench {c.n}" for e, c in last_change.items())
        stamp_gaps = [clock.events[c.n] - final[e][1].timestamp() for e, c in last_change.items()
                      if c.n in clock.events and e in final and final[e][0] == f"bench {c.n}"]
        conference_last = {e: c for e, c in last_change.items() if c.target.conference}
        topics = zoom_topics(zoom, {e: meeting_ids[e] for e in conference_last if e in meeting_ids})
        topic_ok = sum(topics.get(e) == f"bench {c.n}" for e, c in conference_last.items())
        synced_gaps = [clock.conferences[n] - clock.conference_stamps[n] for n in clock.conference_stamps
                       if n in clock.conferences]

        # --- figures ---------------------------------------------------------------------------
        store = first_commits(ok_changes, clock.events)
        meeting = first_commits(conference_changes, clock.conferences)
        by_n = {c.n: c for c in ok_changes}
        store_latency = [t - by_n[n].started for n, (t, _own) in store.items()]
        meeting_latency = [t - by_n[n].started for n, (t, _own) in meeting.items()]
        own = sum(1 for _t, is_own in store.values() if is_own)
        patch_latency = [c.answered - c.started for c in ok_changes]
        notify_latency = [notified[c.n] - c.started for c in ok_changes if c.n in notified]
        notify_to_commit = [t - notified[n] for n, (t, is_own) in store.items() if is_own and n in notified]
        commit_to_meeting = [t - store[n][0] for n, (t, is_own) in meeting.items()
                             if is_own and n in store and store[n][1]]
        list_calls = sum(1 for r in google_log if r["method"] == "GET" and r["path"].endswith("/events"))
        google_calls = Counter(_kind(r) for r in google_log)
        zoom_calls = Counter(r["method"] for r in zoom_log if r["path"].startswith("/v2/"))
        errors = len(changes) - len(ok_changes)
        made = len(changes)
        span = changes[-1].started - changes[0].started if made > 1 else 0.0
        rate_made = (made - 1) / span if span > 0 else float(made)

        print(f"  {made} changes made in {load_seconds:.1f}s ({rate_made:.1f}/s; worst loader lag "
              f"{lag * 1000:.0f} ms){'' if not errors else f'; {errors} PATCHes FAILED'}; "
              f"{len(conference_changes)} on events with a meeting")
        print(f"  {drain_note}")
        print("results")
        seen_line = f"{len(store)} of {len(ok_changes)}"
        seen_line += " (all)" if len(store) == len(ok_changes) else f" -- {len(ok_changes) - len(store)} NEVER SEEN"
        print(f"  changes seen in the store: {seen_line}; {own} as their own title, "
              f"{len(store) - own} overtaken by a later change to the same event before a sync")
        print(f"  {'change -> store commit':<60} {figures(store_latency)}")
        m_line = f"{len(meeting)} of {len(conference_changes)}"
        m_line += "" if len(meeting) == len(conference_changes) else \
            f" -- {len(conference_changes) - len(meeting)} NEVER SEEN"
        print(f"  {'change -> conference updated':<60} {figures(meeting_latency)}  ({m_line})")
        print("  where the time goes")
        for label, values in (
            ("change -> emulator answered the PATCH", patch_latency),
            ("change -> receiver answered its notification", notify_latency),
            (f"that answer -> store commit (debounce {args.debounce * 1000:.0f} ms + sync)", notify_to_commit),
            ("store commit -> conference updated", commit_to_meeting),
        ):
            print(f"    {label:<58} {figures(values)}")
        notes = ", ".join(f"{k} {v}" for k, v in notifications.items()) or "none"
        print(f"  notifications received (calsync_notifications_total): {sum(notifications.values())} ({notes}); "
              f"emulator deliveries: {delivery_note}")
        sync_notes = ", ".join(f"{k} {v}" for k, v in syncs.items()) or "none"
        print(f"  syncs run (calsync_syncs_total): {sum(syncs.values())} ({sync_notes}); "
              f"events.list requests on the emulator: {list_calls}")
        if histogram_after[0] > histogram_before[0]:
            n_obs = histogram_after[0] - histogram_before[0]
            mean = (histogram_after[1] - histogram_before[1]) / n_obs
            print(f"  service's own notification->sync histogram: {n_obs:.0f} syncs, mean {mean * 1000:.0f} ms "
                  f"(from the first notification of a burst to the sync's end)")
        print(f"  calendar requests during the load: {dict(google_calls)}; Zoom API calls: {dict(zoom_calls)}")
        print(f"  checks: final title = last change for {title_ok} of {len(last_change)} events; Zoom topic = last "
              f"change for {topic_ok} of {len(conference_last)} meetings")
        if stamp_gaps:
            print(f"  events.updated_at is stamped before the commit by {figures(stamp_gaps)}")
        if synced_gaps:
            print(f"  conferences.last_synced_at is stamped before the commit by {figures(synced_gaps)}")
        print("  method: change = time.time() before its PATCH; commit = time.time() in this process right after "
              "the COMMIT of the transaction that wrote the title (into events, or into the conference record "
              "after Zoom answered), via SQLAlchemy engine events")
        if store_latency:
            p99 = percentile(store_latency, 99)
            met = p99 < TARGET_P99_S and len(store) == len(ok_changes) and not errors
            verdict = "met" if met else "NOT met"
            if rate_made < TARGET_RATE * 0.98:
                verdict += f" (but measured at {rate_made:.1f}/s, below the target rate)"
            conference_p99 = f", conference update p99 {percentile(meeting_latency, 99) * 1000:.0f} ms" \
                if meeting_latency else ""
            print(f"target: p99 < 1 s at 20 changes/s: {verdict} (store commit p99 {p99 * 1000:.0f} ms at "
                  f"{rate_made:.1f}/s{conference_p99}; {backend}, {args.workers} worker thread(s))")
        if profiles:
            pool.stop()
            server.stop()
            pool = server = None
            profiles.uninstall()
            print("profile (setup and load; latencies above include the profiler's overhead)")
            print(profiles.dump(args.profile))
        print(f"CPU of this process's threads (setup and load): {thread_cpu()}")
        if receiver is not None:
            with engine.connect() as conn:
                tried = conn.execute(select(func.count(), func.coalesce(func.sum(webhook_deliveries.c.attempts), 0))
                                     .select_from(webhook_deliveries)).one()
            print(f"outbound webhook (always failing, {args.failing_webhook}): {tried[0]} deliveries, "
                  f"{tried[1]} failed attempts during the run")
    finally:
        if pool is not None:
            pool.stop(timeout=10)
        if server is not None:
            server.stop()
        for emulator in emulators:
            emulator.stop()
        if receiver is not None:
            receiver.kill()
            receiver.wait(10)
        if engine is not None:
            engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def _kind(request: dict[str, Any]) -> str:
    """A Calendar API request as 'METHOD what' (events list, event, watch, ...)."""
    path = request["path"]
    if path.endswith("/events"):
        what = "events"
    elif path.endswith(("/watch", "/stop")):
        what = path.rsplit("/", 1)[-1]
    elif "/events/" in path:
        what = "event"
    else:
        what = path.rsplit("/", 1)[-1]
    return f"{request['method']} {what}"


def _histogram(metrics: Metrics) -> tuple[float, float]:
    count = total = 0.0
    for metric in metrics.latency.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    return count, total


if __name__ == "__main__":
    main()
