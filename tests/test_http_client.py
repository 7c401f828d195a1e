"""The providers' HTTP client turns transport failures into provider errors (so the engine handles
one family of errors and never imports httpx)."""
from __future__ import annotations

import gc
import json
import re
import socket
import threading
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from calsync.providers.base import ProviderError, Unreachable
from calsync.providers.http import RetryingClient, RetryPolicy, _long_digits, json_body


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


def test_a_read_response_is_freed_by_reference_counting_not_left_in_a_cycle_for_the_collector() -> None:
    """httpx binds a response's stream to the response (a cycle): a page's 2 MB body would live until
    the cyclic collector's next pass, which the CLI makes rare (engine.collector.settle_heap)."""
    body = json.dumps({"items": [{"id": str(n)} for n in range(1000)]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = RetryingClient(f"http://127.0.0.1:{server.server_address[1]}", {})
    enabled = gc.isenabled()
    gc.disable()
    try:
        response = client.request("GET", "/page")
        assert response.json()["items"][999] == {"id": "999"} and response.content == body
        assert b"".join(response.iter_bytes()) == body, "the response still reads as before"
        gone = weakref.ref(response)
        del response
        assert gone() is None, "the response (and its body) outlived its last reference"
    finally:
        if enabled:
            gc.enable()
        client.close()
        server.shutdown()
        server.server_close()


@given(st.lists(st.sampled_from([b"0", b"9", b"0123456789", b"12345", b" ", b'"', b"a", b"\xd9\xa3", b"\x00", b"-"]), max_size=80).map(b"".join))
@example(b"1" * 19 + b" " + b"1" * 19)
@example(b"x" + b"1" * 20)
def test_the_long_digit_scan_finds_what_the_regular_expression_finds(body: bytes) -> None:
    """json_body hands a body with a run of 20 ASCII digits to the standard library; its scan is
    translate-and-find, which must agree with [0-9]{20} (an Arabic-Indic digit is no digit to JSON)."""
    expected = re.search(rb"[0-9]{20}", body)
    assert _long_digits(body) == (expected.start() if expected else None)


def test_a_json_body_orjson_refuses_is_read_by_the_standard_library_and_no_json_still_raises() -> None:
    assert json_body(httpx.Response(200, content=b'{"items": [{"id": "a", "n": 1.5}]}')) == {"items": [{"id": "a", "n": 1.5}]}
    # an escaped lone surrogate and an integer beyond 64 bits: valid JSON that orjson refuses
    odd = json_body(httpx.Response(200, content=b'{"summary": "x\\ud800", "big": 123456789012345678901234567890}'))
    assert odd == {"summary": "x\ud800", "big": 123456789012345678901234567890}
    big = json_body(httpx.Response(200, content=b'[18446744073709551615, 18446744073709551616, "12345678901234567890"]'))
    assert big == [2**64 - 1, 2**64, "12345678901234567890"] and isinstance(big[1], int), "orjson would make 2**64 a float"
    assert json_body(httpx.Response(200, content='{"s": "é"}'.encode("utf-16"))) == {"s": "é"}
    with pytest.raises(ValueError):
        json_body(httpx.Response(200, content=b"<html>not json</html>"))
