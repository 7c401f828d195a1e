"""A long schemathesis run against a real calsync service: every operation of its OpenAPI document,
every phase (examples, coverage, fuzzing, stateful), then the totals: operations, test cases, failures
by kind. tests/test_fuzz_api.py runs the same at a small example count in the suite.

    PYTHONPATH=src:. python bench/fuzz_api.py --max-examples 300 [--seed N] [--header 'Authorization: Bearer K']

The service runs in this process on a loopback port over a fresh SQLite database holding one calendar,
with a Jitsi adapter (no network) so the conference routes do real work; the rate limit is off (a 429
is documented, but it would stop the fuzzer from reaching the routes). Exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

# what schemathesis checks: all of its checks but positive_data_acceptance, which expects every input the
# schema allows to be accepted; the schema cannot say that a calendar_id must name an existing calendar or
# that end must come after start, and those are 422s by design
CHECKS = "all"
EXCLUDED_CHECKS = "positive_data_acceptance"


def fuzz_app(engine: Engine) -> FastAPI:
    """The service over `engine`, which gets the calendar the documented examples name (so they create
    events), with a Jitsi adapter (no network: the conference routes do real work) and no rate limit (a
    429 is documented, but it would keep the fuzzer from the routes)."""
    from calsync.conferencing.jitsi import JitsiAdapter
    from calsync.model import utcnow
    from calsync.service.api import EXAMPLE_CALENDAR_ID
    from calsync.service.app import create_app
    from calsync.service.limits import Limits
    from calsync.store import users
    from calsync.store.schema import calendars

    with engine.begin() as conn:
        now = utcnow()
        owner = users.default_owner(conn)
        conn.execute(
            calendars.insert().values(
                id=EXAMPLE_CALENDAR_ID, name="Fuzz", user_id=owner, created_at=now, updated_at=now
            )
        )
    app = create_app(engine, adapters={"jitsi": JitsiAdapter("fuzz-secret")}, limits=Limits(rate=0))
    # a long poll of the change feed (`wait`, up to 60 s) may answer sooner; here it does, or the
    # fuzzer's boundary values would wait a minute each
    app.state.feed.max_wait = 0.2
    return app


@contextmanager
def fuzz_target(workdir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The service's base URL over a fresh SQLite database, and the headers of a write key of its
    default user, until the block ends."""
    from calsync.emulators.server import serve_in_thread
    from calsync.store import users
    from calsync.store.db import open_engine

    engine = open_engine(f"sqlite:///{workdir / 'calsync.db'}")
    server = serve_in_thread(fuzz_app(engine))
    with engine.begin() as conn:
        _, key = users.create_api_key(conn, users.default_owner(conn), "write", "fuzz")
    try:
        yield server.url, {"Authorization": f"Bearer {key}"}
    finally:
        server.stop()
        engine.dispose()


def run_schemathesis(
    url: str, workdir: Path, *, max_examples: int, seed: int | None, headers: dict[str, str], workers: int = 2
) -> tuple[int, str, dict[str, Any]]:
    """`st run` against the service: its exit status, its output and its JSON report."""
    report = workdir / "schemathesis.json"
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--max-examples",
        str(max_examples),
        "--workers",
        str(workers),
        "--generation-database",
        "none",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
        "--suppress-health-check",
        "all",
    ]
    if seed is not None:
        command += ["--seed", str(seed)]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir, check=False)  # noqa: S603
    return done.returncode, done.stdout + done.stderr, json.loads(report.read_text()) if report.exists() else {}


def totals(report: dict[str, Any]) -> list[str]:
    """The lines to print: operations, test cases, phases, failures by kind (with the operations)."""
    operations, cases = report.get("operations", {}), report.get("test_cases", {})
    lines = [
        f"operations: {operations.get('tested', 0)} tested of {operations.get('total', 0)}",
        (
            f"test cases: {cases.get('generated', 0)} generated, {cases.get('with_failures', 0)} with failures, "
            f"{cases.get('errored', 0)} errored"
        ),
        "phases: " + ", ".join(f"{name} {phase.get('status')}" for name, phase in report.get("phases", {}).items()),
        f"failures: {sum(f.get('count', 0) for f in report.get('failures', []))}",
    ]
    lines += [
        f"  {f.get('code')} {f.get('title')}: {f.get('count')} ({', '.join(f.get('operations', []))})"
        for f in report.get("failures", [])
    ]
    lines.append(f"errors: {len(report.get('errors', []))}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE, sent with every request")
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    with tempfile.TemporaryDirectory(prefix="calsync-fuzz-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        with fuzz_target(workdir) as (url, key_headers):
            status, output, report = run_schemathesis(
                url,
                workdir,
                max_examples=args.max_examples,
                seed=args.seed,
                headers={**key_headers, **{k.strip(): v.strip() for k, v in headers.items()}},
                workers=args.workers,
            )
        elapsed = time.monotonic() - started
    print(output)  # noqa: T201
    print("\n".join(totals(report)))  # noqa: T201
    print(f"max examples per operation: {args.max_examples}; seed: {report.get('seed')}")  # noqa: T201
    print(f"schemathesis exit status {status} in {elapsed:.0f} s")  # noqa: T201
    return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
