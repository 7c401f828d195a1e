"""The providers' HTTP client turns transport failures into provider errors (so the engine handles
one family of errors and never imports httpx)."""
from __future__ import annotations

import socket

import pytest

from calsync.providers.base import ProviderError, Unreachable
from calsync.providers.http import RetryingClient, RetryPolicy


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_service_that_cannot_be_reached_is_an_unreachable_provider_error_after_the_retries() -> None:
    slept: list[float] = []
    client = RetryingClient(f"http://127.0.0.1:{_closed_port()}", {}, policy=RetryPolicy(attempts=3, base_delay=0.01),
                            sleep=slept.append)
    with pytest.raises(Unreachable) as caught:
        client.request("GET", "/calendars")
    assert isinstance(caught.value, ProviderError) and caught.value.status is None
    assert "ConnectError" in str(caught.value)
    assert client.request_count == 3 and len(slept) == 2, "retried in place first"
    with pytest.raises(Unreachable):
        client.request("POST", "/events", idempotent=False)
    assert client.request_count == 4, "a create is not sent twice blind"
    client.close()
