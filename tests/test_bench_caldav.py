"""Smoke test of bench/caldav_vs_vdirsyncer.py at a small size: the request counts it exists to show.

calsync's quiet sync must be exactly 1 request (one sync-collection REPORT), and a sync after 10
remote changes 1 + ceil(10 / batch) (the REPORT, then the multigets), whatever the calendar's size.
Radicale only, 50 events, one run. vdirsyncer runs too when the bench's own virtual environment
exists (bench/.vdirsyncer-venv); otherwise only calsync is measured and the reason is printed.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "caldav_vs_vdirsyncer.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("caldav_vs_vdirsyncer", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def test_bench_request_counts_on_radicale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("radicale")
    bench = _bench()
    vdirsyncer = bench.ensure_vdirsyncer(install=False)
    if vdirsyncer is None:
        with capsys.disabled():
            print(f"\nSKIPPED the vdirsyncer side: no {bench.VDIR_VENV} (the bench makes it on its first full run)")
    result = bench.measure("radicale", 50, 1, vdirsyncer=vdirsyncer, workroot=tmp_path, say=lambda _: None)
    batch = bench.calsync_batch_size()

    def requests(phase: str, tool: str = "calsync") -> list[int]:
        return [s.requests for s in result.samples[phase][tool]]

    for mode in ("calsync", "calsync-service"):  # one process, and handed to a running service
        assert all(s.ok for phase in result.samples.values() for s in phase[mode]), result.samples
        assert requests("quiet", mode) == [1]
        assert requests("changes", mode) == [1 + math.ceil(bench.CHANGES / batch)]
        assert requests("initial", mode) == [1 + math.ceil(50 / batch)]
        assert result.consistent[mode] == "yes"
    service_rss = [s.rss_mib for s in result.samples["initial"]["calsync-service"]]
    client_rss = [s.rss_mib for s in result.samples["initial"]["calsync"]]
    assert service_rss[0] > 30 and client_rss[0] > 30  # real peaks of the working process, not a floor
    if vdirsyncer is not None:
        assert all(s.ok for phase in result.samples.values() for s in phase["vdirsyncer"])
        assert requests("quiet", "vdirsyncer") == [1]  # its quiet sync lists every ETag: 1 PROPFIND
        assert result.consistent["vdirsyncer"] == "yes"
    text = bench.table([result])
    assert "no change" in text and "calsync sync, served" in text and "calsync sync, one process" in text
    assert "calsync serve started in" in text
