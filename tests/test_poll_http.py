"""The provider clients' shared connections (providers/http.shared_transport) are kept in a few pools,
each thread sending through one of them: httpcore looks over every connection of a pool twice per
request, so 32 sync threads on one pool of 32 connections spent more CPU in that bookkeeping than in
their requests (bench/quiet_poll.py: 5.1 -> 3.5 ms of worker CPU a quiet poll)."""

from __future__ import annotations

import threading

import httpx
import pytest

from calsync.providers import http


def test_many_threads_share_the_connections_in_a_few_small_pools(
    google_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "_transports", {})  # this test's own pools, not the process's
    httpx.post(f"{google_url}/emulator/faults", json={"latency_ms": 300}).raise_for_status()  # all 32 at once
    threads = 32
    together = threading.Barrier(threads)
    answers: list[int] = []

    def sync_thread() -> None:
        client = http.RetryingClient(f"{google_url}/calendar/v3", {"Authorization": "Bearer alice"})
        try:
            for _ in range(2):  # the second request reuses a connection of the thread's pool
                together.wait(30)
                answers.append(client.request("GET", "/users/me/calendarList").status_code)
        finally:
            client.close()  # the connections stay with the shared pools

    try:
        running = [threading.Thread(target=sync_thread) for _ in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join(60)
    finally:
        httpx.delete(f"{google_url}/emulator/faults").raise_for_status()
    assert answers == [200] * (2 * threads)
    shared = http.shared_transport(False)
    assert isinstance(shared, http._Shared)
    pools = [pool for pool in shared._pools if pool is not None]
    assert len(pools) == http.SHARDS  # every pool in use, threads handed out in turn
    sizes = [len(pool._pool.connections) for pool in pools]
    # one pool would hold all 32 connections and look over them all for every request
    assert max(sizes) <= threads // http.SHARDS, sizes
    assert sum(sizes) == threads, sizes  # 32 requests at once: 32 connections, none opened for the second round
