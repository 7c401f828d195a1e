"""The providers' HTTP client turns transport failures into provider errors (so the engine handles
one family of errors and never imports httpx)."""
from __future__ import annotations

import gc
import json
import socket
import threading
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from calsync.providers.base import ProviderError, Unreachable
from calsync.providers.http import RetryingClient, RetryPolicy, _long_integer, json_body


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


_DIGITY = st.text(st.sampled_from("0123456789 :,-[]\"aE"), max_size=30)  # digit runs after every kind of byte
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
              st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=False), _DIGITY),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_DIGITY, inner, max_size=4)),
    max_leaves=12,
)


def _typed(value: object) -> object:
    """A JSON value with every number's type spelt out (2**64 and 2.0**64 compare equal otherwise)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


@given(_JSON, st.sampled_from([None, 0, 2]), st.sampled_from([(", ", ": "), (",", ":"), (" ,", " : ")]))
@example(10**19, None, (",", ":"))
@example(2**70, None, (",", ":"))
@example({"iCalUId": "040000008200E00074C5B7101A82E00800000000000000000000000010000"}, None, (",", ":"))
@example([-(10**25)], 2, (",", ":"))
def test_a_json_body_is_what_the_standard_library_reads_with_every_integer_an_integer(
    value: object, indent: int | None, separators: tuple[str, str]
) -> None:
    """json_body reads by orjson unless the body may hold an integer beyond 64 bits (which orjson
    would make a float): whatever the value, spacing and digit runs inside text, it reads what the
    standard library reads, every integer an integer."""
    text = json.dumps(value, indent=indent, separators=separators)
    assert _typed(json_body(httpx.Response(200, content=text.encode()))) == _typed(json.loads(text))


def test_digit_runs_inside_text_leave_the_body_to_orjson() -> None:
    """Outlook's iCalUIds (runs of zeros) and Google's ETags (16 digits) are no integers: such a page
    is read by orjson, not sent to the standard library (every Graph page was)."""
    page = {"value": [{"iCalUId": "040000008200E00074C5B7101A82E008000000000000000000000000100000F9BDDEA",
                       "etag": '"31811617847120003181"', "n": 2**63 - 1}]}
    assert _long_integer(json.dumps(page).encode()) is None
    assert _long_integer(json.dumps({"n": 2**64}).encode()) is not None
    assert _long_integer(json.dumps([-(2**70)], indent=1).encode()) is not None


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
