"""The OpenAPI document is the contract: schemathesis drives a real service (uvicorn on loopback) through
every operation of it, in every phase (examples, coverage, fuzzing, stateful sequences along the
document's links), and every answer must be documented and match its schema, none a 5xx.

A bounded run (seeded, a few dozen examples per operation) keeps it near half a minute; bench/fuzz_api.py
is the long run and prints its totals."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.fuzz_api import fuzz_app, run_schemathesis
from sqlalchemy import Engine

from calsync.emulators.server import serve_in_thread

MAX_EXAMPLES = 25
SEED = 19


@pytest.fixture()
def service_url(engine: Engine) -> Iterator[str]:
    server = serve_in_thread(fuzz_app(engine))
    yield server.url
    server.stop()


@pytest.mark.timeout(240)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    service_url: str, api_headers: dict[str, str], tmp_path: Path
) -> None:
    if not Path(sys.executable).with_name("st").exists():
        pytest.skip("schemathesis is not installed: pip install -e '.[dev]'")
    operations = httpx.get(f"{service_url}/openapi.json").raise_for_status().json()["paths"]
    count = sum(len(methods) for methods in operations.values())
    status, output, report = run_schemathesis(
        service_url, tmp_path, max_examples=MAX_EXAMPLES, seed=SEED, headers=api_headers
    )
    tail = output[-6000:]
    assert report, f"schemathesis wrote no report (exit status {status}):\n{tail}"
    assert report["failures"] == [], f"schemathesis failures:\n{tail}"
    assert report["errors"] == [], f"schemathesis errors:\n{tail}"
    assert status == 0, tail
    assert report["operations"]["tested"] == count == report["operations"]["total"], report["operations"]
    assert report["test_cases"]["generated"] >= count * 10, report["test_cases"]
    assert all(phase["status"] == "success" for phase in report["phases"].values()), report["phases"]
