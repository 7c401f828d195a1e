"""calsync vs vdirsyncer against one real CalDAV server: time, peak memory and HTTP requests.

    .venv/bin/python bench/caldav_vs_vdirsyncer.py            # Radicale and Xandikos, 1,000 and 10,000 events
    .venv/bin/python bench/caldav_vs_vdirsyncer.py --quick    # smoke: 1,000 events, one run each

What is measured, per server and calendar size (the same seeded calendar for every tool):
(a) the initial sync, (b) an incremental sync after 10 changes made by another client (6 edits,
2 creates, 2 deletes, raw HTTP straight to the server), (c) a sync with nothing changed. Each sync
is a whole process (`calsync sync`, `vdirsyncer sync`) with its own database / status in a
temporary folder; its wall time and peak RSS come from os.wait4 in a small launcher process (so the
bench's own memory is not carried over into the child). calsync is measured two ways:
- "served": `calsync serve --no-workers` owns the SQLite database (as it does in production) and the
  timed `calsync sync` hands it the work (calsync.launch). The service is started once per fresh
  state and not timed (its start-up is printed as a note); the peak RSS shown is the service's.
- "one process": `calsync sync --local`, importing and running the whole engine in the timed process.
The tools alternate (A B C, then C B A), several runs each, and the medians are printed. Every
request goes through a counting loopback proxy (bench/caldav_proxy.py), so all are counted alike.

vdirsyncer is installed from PyPI into its own virtual environment (bench/.vdirsyncer-venv, made on
first use) and syncs pull-only (the server side read-only) into a filesystem storage.

Facts the design follows (see the report printed at the end):
- vdirsyncer lists every href and ETag on every run, so even a quiet sync costs O(calendar);
  calsync asks for the changes since its RFC 6578 sync token (1 request when nothing changed).
- Radicale computes a sync token by walking the whole collection (server side, grows with the
  calendar): that is the floor of any sync there. Xandikos diffs two git trees (grows with the change).
- A stock Radicale refuses a REPORT answer holding more than 10,000 VEVENTs ([reporting]
  max_expand_occurrence): vdirsyncer's single calendar-multiget of the whole calendar fails there.
  The bench then records the failure and measures on a Radicale with that limit raised, so there is
  something to compare with; calsync fetches in bounded batches and works on the stock server.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from caldav_proxy import CountingProxy
from caldav_seed import event_ics, item_name, seed_radicale, seed_xandikos

VDIR_VENV = HERE / ".vdirsyncer-venv"
USERNAME, PASSWORD = "alice", "secret"
CHANGES = 10
XML = {"Content-Type": "application/xml; charset=utf-8"}
PHASES = ("initial", "changes", "quiet")
PHASE_TITLES = {"initial": "initial sync", "changes": f"after {CHANGES} changes", "quiet": "no change"}


def calsync_batch_size() -> int:
    from calsync.providers.caldav import BATCH_SIZE

    return BATCH_SIZE


# --- child processes -------------------------------------------------------------------------


@dataclass
class Sample:
    """One timed run of one tool."""

    wall: float
    rss_mib: float
    requests: int
    ok: bool
    by_method: dict[str, int] = field(default_factory=dict)
    note: str = ""


# A small process forks the tool, so the tool's peak RSS starts from that process's few MiB, not from
# this one's: Linux carries a process's peak RSS over fork and exec.
_LAUNCHER = """
import os, sys, time
report, command = int(sys.argv[1]), sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.close(report)
    os.execvp(command[0], command)
_, status, usage = os.wait4(pid, 0)
os.write(report, f"{time.perf_counter() - started} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}".encode())
"""


def run_child(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[float, float, int]:
    """Run one process to its end: (wall seconds, peak RSS MiB of that process, exit code)."""
    read_end, write_end = os.pipe()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        launcher = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(write_end), *cmd], env=env, cwd=cwd,
                                    stdout=out, stderr=out, stdin=subprocess.DEVNULL, pass_fds=(write_end,))
        os.close(write_end)
        with os.fdopen(read_end, "rb") as report:
            text = report.read().decode()
        launcher.wait()
    wall, maxrss_kib, code = text.split()
    return float(wall), int(maxrss_kib) / 1024, int(code)


def _tail(path: Path, lines: int = 6) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:])[-400:]


def ensure_vdirsyncer(venv: Path = VDIR_VENV, *, install: bool = True) -> Path | None:
    """The vdirsyncer executable in the bench's own virtual environment (created when missing)."""
    exe = venv / "bin" / "vdirsyncer"
    if exe.exists():
        return exe
    if not install:
        return None
    print(f"installing vdirsyncer into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "vdirsyncer"], check=True)
    return exe if exe.exists() else None


def calsync_command() -> list[str]:
    """The `calsync` console script of the running interpreter's environment (what a user runs)."""
    script = Path(sys.executable).parent / "calsync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "calsync.cli"]


def compile_calsync() -> None:
    """Byte-compile calsync as `pip install` does for a regular install (an editable one does not):
    the timed processes run with PYTHONDONTWRITEBYTECODE, so stale or missing .pyc files would be
    recompiled on every run and charged to calsync, while vdirsyncer's venv has its own."""
    import compileall

    import calsync

    compileall.compile_dir(str(Path(calsync.__file__).parent), quiet=1)


def clean_env(workdir: Path) -> dict[str, str]:
    """No user configuration of either tool leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALSYNC_", "VDIRSYNCER_"))}
    env.update(HOME=str(workdir), XDG_CONFIG_HOME=str(workdir / "config"), XDG_DATA_HOME=str(workdir / "data"),
               XDG_CACHE_HOME=str(workdir / "cache"), PYTHONDONTWRITEBYTECODE="1")
    return env


# --- the servers -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """Radicale or Xandikos on a free loopback port, with its storage in a temporary folder."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.storage = root / kind
        self.storage.mkdir(parents=True)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.raised_limit = False
        self.calendar = "/alice/bench/" if kind == "radicale" else "/user/calendars/calendar/"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _command(self) -> list[str]:
        if self.kind == "radicale":
            config = self.storage / "radicale.conf"
            lines = ["[server]", f"hosts = 127.0.0.1:{self.port}", "[auth]", "type = none", "[storage]",
                     f"filesystem_folder = {self.storage / 'collections'}", "[logging]", "level = warning"]
            if self.raised_limit:
                lines += ["[reporting]", "max_expand_occurrence = 10000000"]
            config.write_text("\n".join(lines) + "\n")
            return [sys.executable, "-m", "radicale", "--config", str(config)]
        return [sys.executable, "-m", "xandikos", "serve", "--defaults", "-d", str(self.storage / "data"),
                "--state-dir", str(self.storage / "state"), "-l", "127.0.0.1", "-p", str(self.port),
                "--no-detect-systemd"]

    def start(self) -> None:
        self.port = _free_port()
        log = (self.storage / "server.log").open("ab")
        self.process = subprocess.Popen(self._command(), stdout=log, stderr=log, cwd=self.storage)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                answer = httpx.request("PROPFIND", self.url, headers={"Depth": "0"}, auth=(USERNAME, PASSWORD),
                                       timeout=5)
                if answer.status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not start: {(self.storage / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    def restart(self, *, raised_limit: bool) -> None:
        self.stop()
        self.raised_limit = raised_limit
        self.start()

    def seed(self, count: int) -> None:
        """Write the calendar into the server's storage (server stopped), then start it and warm it up."""
        if self.kind == "radicale":
            seed_radicale(self.storage / "collections" / "collection-root" / USERNAME / "bench", count)
            self.start()
        else:
            self.start()  # --defaults makes the principal and its calendar (a git repository)
            self.stop()
            seed_xandikos(self.storage / "data" / "user" / "calendars" / "calendar", count)
            self.start()
        self.warm_up()

    def warm_up(self) -> None:
        """Read everything once, so the server's caches (Radicale's item cache and token history) are
        built before anything is timed, whichever tool happens to go first."""
        with httpx.Client(base_url=self.url, auth=(USERNAME, PASSWORD), timeout=600) as http:
            body = '<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getetag/></prop></propfind>'
            answer = http.request("PROPFIND", self.calendar, content=body, headers={**XML, "Depth": "1"})
            assert answer.status_code == 207, answer.text[:500]
            body = ('<?xml version="1.0"?><sync-collection xmlns="DAV:"><sync-token/><sync-level>1</sync-level>'
                    "<prop><getetag/></prop></sync-collection>")
            answer = http.request("REPORT", self.calendar, content=body, headers={**XML, "Depth": "0"})
            assert answer.status_code == 207, answer.text[:500]


class OtherClient:
    """Makes the remote changes as another CalDAV client would: plain PUT / DELETE to the server."""

    def __init__(self, server: Server, size: int) -> None:
        self.server = server
        self.size = size
        self.live: dict[int, int] = {i: 0 for i in range(size)}  # item index -> revision
        self.next_index = size

    def apply(self, round_no: int) -> dict[str, int]:
        """10 changes: 6 edits, 2 creates, 2 deletes of items spread over the calendar."""
        step = max(1, self.size // 11)
        picked = sorted(self.live)[(round_no * 7) % step::step]
        picked = [i for i in picked if i < self.size][:8] or sorted(self.live)[:8]
        edits, deletes = picked[:6], picked[6:8]
        with httpx.Client(base_url=self.server.url, auth=(USERNAME, PASSWORD), timeout=60) as http:
            for index in edits:
                self.live[index] += 1
                self._put(http, index)
            for _ in range(2):
                index = self.next_index
                self.next_index += 1
                self.live[index] = 0
                self._put(http, index)
            for index in deletes:
                answer = http.delete(f"{self.server.calendar}{item_name(index)}.ics")
                assert answer.status_code in (200, 204), (answer.status_code, answer.text[:300])
                del self.live[index]
        return {"edits": len(edits), "creates": 2, "deletes": len(deletes)}

    def _put(self, http: httpx.Client, index: int) -> None:
        answer = http.put(f"{self.server.calendar}{item_name(index)}.ics",
                          content=event_ics(index, revision=self.live[index]).encode(),
                          headers={"Content-Type": "text/calendar; charset=utf-8"})
        assert answer.status_code in (200, 201, 204), (answer.status_code, answer.text[:300])

    def expected_events(self) -> int:
        """VEVENTs on the server now: calsync stores each override as an event of its own."""
        return sum(event_ics(i, revision=r).count("BEGIN:VEVENT") for i, r in self.live.items())


# --- the two tools ---------------------------------------------------------------------------


class Tool:
    """One sync tool with its own state folder; `sync` is the timed whole-process run."""

    name = ""

    def __init__(self, workdir: Path, proxy: CountingProxy, server: Server) -> None:
        self.workdir = workdir
        self.proxy = proxy
        self.server = server
        self.log = workdir / "tool.log"

    def fresh(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        self.setup()

    def setup(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def check(self, rc: int) -> tuple[bool, str]:
        return rc == 0, "" if rc == 0 else _tail(self.log)

    def sync(self) -> Sample:
        self.proxy.reset()
        wall, rss, rc = run_child(self.command(), clean_env(self.workdir), self.workdir, self.log)
        ok, note = self.check(rc)
        return Sample(wall, rss, self.proxy.total, ok, self.proxy.snapshot(), note)

    def events(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Stop whatever the tool left running."""


class Calsync(Tool):
    name = "calsync"

    @property
    def db(self) -> str:
        return f"sqlite:///{self.workdir / 'calsync.db'}"

    def _run(self, *args: str) -> str:
        env = clean_env(self.workdir)
        done = subprocess.run([*calsync_command(), *args, "--db", self.db], env=env, cwd=self.workdir,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"calsync {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def setup(self) -> None:
        (self.workdir / "config.toml").write_text("")
        account = self._run("account", "add", "caldav", "--url", self.proxy.url, "--username", USERNAME,
                            "--password", PASSWORD, "--no-verify").strip()
        self._run("calendar", "bind", account, self.server.calendar, "--direction", "pull", "--json")

    def command(self) -> list[str]:
        return [*calsync_command(), "sync", "--json", "--db", self.db,
                "--config", str(self.workdir / "config.toml"), *self.sync_options]

    sync_options: tuple[str, ...] = ("--local",)

    def check(self, rc: int) -> tuple[bool, str]:
        text = self.log.read_text(errors="replace")
        start = text.rfind("\n{")
        try:
            report = json.loads(text[start:]) if start >= 0 else {}
        except json.JSONDecodeError:
            report = {}
        inbound = report.get("inbound") or [{}]
        ok = rc == 0 and all(r.get("status") == "ok" for r in inbound)
        summary = ", ".join(f"{k} {inbound[0].get(k)}" for k in ("created", "updated", "deleted")
                            if inbound[0].get(k))
        return ok, summary if ok else _tail(self.log)

    def events(self) -> int:
        calendars = json.loads(self._run("calendar", "list", "--json"))
        return sum(int(c["events"]) for c in calendars)


class CalsyncService(Calsync):
    """calsync as it runs for real: `calsync serve` owns the SQLite database and the timed process is
    still `calsync sync`, which hands the work to the service (calsync.launch). The service starts
    once per fresh state, untimed (its start-up is reported apart); the memory reported is the
    service's own peak (VmHWM), since the service does the work."""

    name = "calsync-service"
    sync_options: tuple[str, ...] = ()

    def __init__(self, workdir: Path, proxy: CountingProxy, server: Server) -> None:
        super().__init__(workdir, proxy, server)
        self.process: subprocess.Popen[bytes] | None = None
        self.startups: list[float] = []

    def fresh(self) -> None:
        self.close()
        super().fresh()

    def setup(self) -> None:
        super().setup()
        from calsync.service import runtime

        database = self.workdir / "calsync.db"
        started = time.perf_counter()
        with (self.workdir / "service.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*calsync_command(), "serve", "--no-workers", "--port", "0", "--db", self.db,
                 "--config", str(self.workdir / "config.toml")],
                env=clean_env(self.workdir), cwd=self.workdir, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            record = runtime.read(database)
            if record is not None and record.pid == self.process.pid:
                httpx.get(f"{record.url}/healthz", timeout=10).raise_for_status()
                self.startups.append(time.perf_counter() - started)
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"calsync serve did not start: {_tail(self.workdir / 'service.log')}")

    def sync(self) -> Sample:
        sample = super().sync()
        if self.process is not None:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
            hwm_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            sample.note = f"{sample.note} (client process {sample.rss_mib:.0f} MiB)".strip()
            sample.rss_mib = hwm_kib / 1024
        return sample

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


class Vdirsyncer(Tool):
    name = "vdirsyncer"

    def __init__(self, workdir: Path, proxy: CountingProxy, server: Server, exe: Path) -> None:
        super().__init__(workdir, proxy, server)
        self.exe = exe

    def setup(self) -> None:
        (self.workdir / "vdir").mkdir()
        (self.workdir / "status").mkdir()
        config = f"""[general]
status_path = "{self.workdir / 'status'}/"

[pair bench]
a = "bench_server"
b = "bench_local"
collections = null
conflict_resolution = "a wins"

[storage bench_server]
type = "caldav"
url = "{self.proxy.url}{self.server.calendar.lstrip('/')}"
username = "{USERNAME}"
password = "{PASSWORD}"
read_only = true

[storage bench_local]
type = "filesystem"
path = "{self.workdir / 'vdir'}/"
fileext = ".ics"
"""
        (self.workdir / "config").write_text(config)
        done = subprocess.run([str(self.exe), "-c", str(self.workdir / "config"), "discover"],
                              env=clean_env(self.workdir), cwd=self.workdir, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"vdirsyncer discover: {done.stdout}{done.stderr}")

    def command(self) -> list[str]:
        return [str(self.exe), "-c", str(self.workdir / "config"), "sync"]

    def check(self, rc: int) -> tuple[bool, str]:
        tail = _tail(self.log, 3)
        ok = rc == 0 and "error" not in tail.lower()
        return ok, "" if ok else tail

    def events(self) -> int:
        return sum(1 for _ in (self.workdir / "vdir").glob("*.ics"))


# --- one server, one size ------------------------------------------------------------------------


@dataclass
class Result:
    """The samples of one (server, size): phase -> tool -> samples, and what happened on the way."""

    server: str
    size: int
    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stock_initial: dict[str, Sample] = field(default_factory=dict)  # Radicale: both tools on the stock server
    consistent: dict[str, str] = field(default_factory=dict)

    def add(self, phase: str, tool: str, sample: Sample) -> None:
        self.samples.setdefault(phase, {}).setdefault(tool, []).append(sample)

    def median(self, phase: str, tool: str, what: str) -> float | None:
        runs = [s for s in self.samples.get(phase, {}).get(tool, []) if s.ok]
        if not runs:
            return None
        return float(statistics.median(getattr(s, what) for s in runs))

    def failed(self, phase: str, tool: str) -> bool:
        runs = self.samples.get(phase, {}).get(tool, [])
        return bool(runs) and not any(s.ok for s in runs)


def _order(tools: list[Tool], run: int) -> list[Tool]:
    return tools if run % 2 == 0 else tools[::-1]


def measure(kind: str, size: int, runs: int, *, vdirsyncer: Path | None, workroot: Path,
            say: Callable[[str], None] = print) -> Result:
    """Seed one server with `size` events and run the three phases, alternating the tools."""
    result = Result(kind, size)
    root = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-{size}-", dir=workroot))
    server = Server(kind, root)
    proxy: CountingProxy | None = None
    tools: list[Tool] = []
    try:
        started = time.perf_counter()
        server.seed(size)
        say(f"{kind} {size:,} events: seeded and warmed up in {time.perf_counter() - started:.1f} s")
        proxy = CountingProxy(server.port)
        tools = [Calsync(root / "calsync", proxy, server), CalsyncService(root / "calsync-service", proxy, server)]
        if vdirsyncer is not None:
            tools.append(Vdirsyncer(root / "vdirsyncer", proxy, server, vdirsyncer))

        def run(phase: str, tool: Tool, fresh: bool = False) -> Sample:
            if fresh:
                tool.fresh()
            sample = tool.sync()
            result.add(phase, tool.name, sample)
            say(f"  {phase:8} {tool.name:15} {sample.wall:7.2f} s {sample.rss_mib:6.1f} MiB "
                f"{sample.requests:4d} req {'ok' if sample.ok else 'FAILED'} {sample.note[:150]}")
            return sample

        if kind == "radicale" and vdirsyncer is not None:
            # The stock server first: does each tool's initial sync work at all?
            for tool in tools:
                tool.fresh()
                sample = tool.sync()
                result.stock_initial[tool.name] = sample
                say(f"  stock    {tool.name:15} {sample.wall:7.2f} s {sample.requests:4d} req "
                    f"{'ok' if sample.ok else 'FAILED: ' + sample.note[:200]}")
            if not all(s.ok for s in result.stock_initial.values()):
                failed = ", ".join(n for n, s in result.stock_initial.items() if not s.ok)
                result.notes.append(f"stock Radicale: initial sync failed for {failed}; measured on a Radicale "
                                    f"with [reporting] max_expand_occurrence raised")
                proxy.close()
                server.restart(raised_limit=True)
                server.warm_up()
                proxy = CountingProxy(server.port)
                for tool in tools:
                    tool.proxy = proxy
            else:
                for tool in tools:
                    result.add("initial", tool.name, result.stock_initial[tool.name])
        done = len(result.samples.get("initial", {}).get("calsync", []))
        for r in range(done, runs):
            for tool in _order(tools, r):
                run("initial", tool, fresh=True)
        other = OtherClient(server, size)
        for r in range(runs):
            other.apply(r)
            for tool in _order(tools, r):
                run("changes", tool)
        for r in range(runs):
            for tool in _order(tools, r):
                run("quiet", tool)
        expected = other.expected_events()
        for tool in tools:
            want = expected if tool.name.startswith("calsync") else len(other.live)
            try:
                got = tool.events()
                result.consistent[tool.name] = "yes" if got == want else f"NO ({got} != {want})"
            except Exception as exc:  # noqa: BLE001 (a report line, not a crash)
                result.consistent[tool.name] = f"unknown ({exc})"
        for tool in tools:
            if isinstance(tool, CalsyncService):
                result.notes.append(f"calsync serve started in {statistics.median(tool.startups):.2f} s "
                                    f"(median of {len(tool.startups)}), untimed: it runs all along")
    finally:
        for tool in tools:
            tool.close()
        if proxy is not None:
            proxy.close()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return result


# --- report ----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "FAILED" if value is None else format(value, spec)


CALSYNC_MODES = {"calsync-service": "calsync sync, served", "calsync": "calsync sync, one process"}
TOOL_TITLES = {**CALSYNC_MODES, "vdirsyncer": "vdirsyncer sync"}


def table(results: Iterable[Result]) -> str:
    head = (f"{'server':9} {'events':>7} {'phase':16} {'tool':26} {'time s':>7} {'vs vdirsyncer':>13} "
            f"{'requests':>8} {'peak MiB':>8}")
    lines = [head, "-" * len(head)]
    for res in results:
        for phase in PHASES:
            v_wall = res.median(phase, "vdirsyncer", "wall")
            for tool in res.samples.get(phase, {}):
                wall = res.median(phase, tool, "wall")
                ratio = "" if tool == "vdirsyncer" else (
                    f"{v_wall / wall:12.1f}x" if wall and v_wall else ("n/a" if wall else "FAILED"))
                lines.append(
                    f"{res.server:9} {res.size:>7,} {PHASE_TITLES[phase]:16} {TOOL_TITLES.get(tool, tool):26} "
                    f"{_fmt(wall, '7.2f'):>7} {ratio:>13} {_fmt(res.median(phase, tool, 'requests'), '8.0f'):>8} "
                    f"{_fmt(res.median(phase, tool, 'rss_mib'), '8.0f'):>8}")
        for name, sample in res.stock_initial.items():
            state = "ok" if sample.ok else "FAILED"
            lines.append(f"{'':9} {'':7} stock Radicale, initial sync: {TOOL_TITLES.get(name, name)} {state} "
                         f"({sample.wall:.1f} s, {sample.requests} requests) {'' if sample.ok else sample.note[:120]}")
        for note in res.notes:
            lines.append(f"{'':17} note: {note}")
        if res.consistent:
            lines.append(f"{'':17} events held after the runs match the server: "
                         + ", ".join(f"{k} {v}" for k, v in res.consistent.items()))
    return "\n".join(lines)


@dataclass
class Goal:
    text: str
    holds: bool | None  # None: not measured
    detail: str


def goals(results: list[Result], batch: int) -> list[Goal]:
    """The issue's goals, checked at the largest size measured on each server, for each way of
    running calsync (served, one process)."""
    out: list[Goal] = []
    biggest: dict[str, Result] = {}
    for res in results:
        if res.server not in biggest or res.size > biggest[res.server].size:
            biggest[res.server] = res
    want_changes = 1 + math.ceil(CHANGES / batch)
    for res in results:
        quiet = [s for mode in CALSYNC_MODES for s in res.samples.get("quiet", {}).get(mode, [])]
        changes = [s for mode in CALSYNC_MODES for s in res.samples.get("changes", {}).get(mode, [])]
        q = sorted({s.requests for s in quiet})
        c = sorted({s.requests for s in changes})
        out.append(Goal(f"{res.server} {res.size:,}: requests quiet = 1, {CHANGES} changes = 1 + ceil({CHANGES}/{batch}) "
                        f"= {want_changes}", q == [1] and c == [want_changes], f"quiet {q}, changes {c}"))
    for server, res in biggest.items():
        factor = 10 if server == "xandikos" else 3
        v_rss = res.median("initial", "vdirsyncer", "rss_mib")
        for mode, title in CALSYNC_MODES.items():
            if mode not in res.samples.get("initial", {}):
                continue
            for phase in ("quiet", "changes"):
                c_wall, v_wall = res.median(phase, mode, "wall"), res.median(phase, "vdirsyncer", "wall")
                holds = None if not (c_wall and v_wall) else v_wall / c_wall >= factor
                detail = "not measured" if holds is None else f"{v_wall / c_wall:.1f}x ({c_wall:.2f} s vs {v_wall:.2f} s)"
                out.append(Goal(f"{server} {res.size:,}, {title}: {PHASE_TITLES[phase]} >= {factor}x faster than "
                                f"vdirsyncer", holds, detail))
            c_wall, v_wall = res.median("initial", mode, "wall"), res.median("initial", "vdirsyncer", "wall")
            holds = None if not (c_wall and v_wall) else c_wall < v_wall
            out.append(Goal(f"{server} {res.size:,}, {title}: initial sync faster than vdirsyncer's", holds,
                            "not measured" if holds is None else f"{v_wall / c_wall:.2f}x ({c_wall:.1f} s vs {v_wall:.1f} s)"))
            c_rss = res.median("initial", mode, "rss_mib")
            holds = None if not (c_rss and v_rss) else c_rss < v_rss
            out.append(Goal(f"{server} {res.size:,}, {title}: initial sync peak RSS below vdirsyncer's", holds,
                            "not measured" if holds is None else f"{c_rss:.0f} MiB vs {v_rss:.0f} MiB"))
        if server == "radicale" and res.stock_initial:
            stock = ", ".join(f"{TOOL_TITLES.get(n, n)} {'ok' if s.ok else 'FAILED'}" for n, s in res.stock_initial.items())
            out.append(Goal(f"radicale {res.size:,}: initial sync works on a stock Radicale",
                            all(s.ok for n, s in res.stock_initial.items() if n in CALSYNC_MODES), stock))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 events, one run per tool and phase")
    parser.add_argument("--servers", default="radicale,xandikos", help="comma-separated: radicale,xandikos")
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated calendar sizes")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per tool and phase (medians)")
    parser.add_argument("--no-vdirsyncer", action="store_true", help="calsync only")
    parser.add_argument("--json", dest="json_path", help="also write the samples as JSON to this file")
    args = parser.parse_args(argv)
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",")]
    runs = 1 if args.quick else args.runs
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    vdir = None if args.no_vdirsyncer else ensure_vdirsyncer()
    compile_calsync()
    if vdir is None and not args.no_vdirsyncer:
        print("vdirsyncer could not be installed: calsync only")
    batch = calsync_batch_size()
    started = time.perf_counter()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="calsync-bench-") as workroot:
        for kind in servers:
            for size in sizes:
                results.append(measure(kind, size, runs, vdirsyncer=vdir, workroot=Path(workroot)))
    print()
    print(f"calsync vs vdirsyncer {'(quick) ' if args.quick else ''}— medians of {runs} alternating run(s); "
          f"time of the whole `sync` process; peak RSS of the process doing the work; requests counted by a "
          f"loopback proxy; "
          f"calsync multiget batch {batch}")
    print(table(results))
    print()
    for goal in goals(results, batch):
        mark = {True: "holds", False: "MISSED", None: "n/a"}[goal.holds]
        print(f"  [{mark:6}] {goal.text}: {goal.detail}")
    print(f"\ntotal bench time {time.perf_counter() - started:.0f} s")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps([
            {"server": r.server, "size": r.size, "notes": r.notes, "consistent": r.consistent,
             "stock_initial": {k: vars(v) for k, v in r.stock_initial.items()},
             "samples": {p: {t: [vars(s) for s in ss] for t, ss in tools.items()} for p, tools in r.samples.items()}}
            for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
