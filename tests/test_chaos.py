"""The randomised convergence harness (bench/chaos.py), short: a local calendar mirrored to Google,
Outlook and Radicale at once, changed at random on every side (series included) with faults, token
invalidations, forced full resyncs, killed workers and conflicts resolved at random; once the faults
are gone and the conflicts settled, every side holds the same live events, nothing is duplicated or
resurrected, and every deletion traces to one the harness made.

A failure names the seed and the events that diverged; `python bench/chaos.py --seed N --ops M
--skip ... --history` replays it with what was done to each of them.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

OPS = 150
SEEDS = (1, 2, 3)
# No operation kind is left out; a seed that finds a problem fails the test with the replay command.


def _chaos() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "chaos.py"
    spec = importlib.util.spec_from_file_location("calsync_bench_chaos", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", SEEDS)
def test_random_changes_on_every_side_converge(seed: int) -> None:
    chaos = _chaos()
    providers = ("google", "graph", "radicale")  # Radicale is a dev dependency: a real CalDAV server is always here
    lines: list[str] = []
    result = chaos.run(chaos.Config(seed=seed, ops=OPS, providers=providers, history=True,
                                    out=lines.append))
    assert result.stats["syncs"] > OPS // 10 and result.stats["op_create"] > 0
    assert not result.problems, "\n".join([result.summary(), *lines[-80:]])
