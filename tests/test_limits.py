"""Limits and bad input over real HTTP: every refusal is a clear 4xx and leaves the store as it was;
the body cap (413), the rate limit (429 with Retry-After), and the OpenAPI document that states them."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import hashlib

import httpx
import pytest
from openapi_spec_validator import validate
from sqlalchemy import Engine, func, select

from calsync.emulators.server import serve_in_thread
from calsync.service.api import MAX_ATTENDEES, MAX_LIMIT
from calsync.service.app import create_app
from calsync.service.limits import DEFAULT_MAX_BODY_BYTES, Limits, LimitSettingError, TokenBuckets, caller_key
from calsync.store import accounts as account_store
from calsync.store.schema import events, outbox
from tests.helpers import auth_headers

SLOT = {"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"}
MiB = 1024 * 1024


@pytest.fixture()
def serve(engine: Engine) -> Iterator[Callable[..., httpx.Client]]:
    """Start the service over `engine` with the given limits; a client for its /api/v1."""
    servers, clients = [], []

    def start(limits: Limits | None = None, **client_args: Any) -> httpx.Client:
        server = serve_in_thread(create_app(engine, limits=limits))
        servers.append(server)
        headers = {**auth_headers(engine, "write"), **client_args.pop("headers", {})}
        client = httpx.Client(base_url=f"{server.url}/api/v1", timeout=60, headers=headers, **client_args)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


@pytest.fixture()
def calendar(engine: Engine) -> str:
    with engine.begin() as conn:
        return account_store.create_calendar(conn, "Team")


def snapshot(engine: Engine) -> tuple[int, int, list[tuple[Any, ...]]]:
    """What a refused request must not change: the event rows (with version and content) and the outbox."""
    with engine.begin() as conn:
        rows = [tuple(r) for r in conn.execute(select(events.c.id, events.c.version, events.c.title,
                                                      events.c.description, events.c.deleted))]
        return (
            int(conn.execute(select(func.count()).select_from(events)).scalar_one()),
            int(conn.execute(select(func.count()).select_from(outbox)).scalar_one()),
            sorted(rows),
        )


def error_fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, (response.status_code, response.text[:300])
    return [str(error["loc"][-1]) for error in response.json()["detail"]]


def test_each_refusal_is_a_clear_4xx_and_writes_nothing(
    engine: Engine, serve: Callable[..., httpx.Client], calendar: str
) -> None:
    api = serve()
    event = api.post("/events", json={"calendar_id": calendar, "title": "Standup", **SLOT}).json()
    guarded = {"If-Match": event["etag"]}
    before = snapshot(engine)

    def post(**fields: Any) -> httpx.Response:
        return api.post("/events", json={"calendar_id": calendar, "title": "Standup", **SLOT, **fields})

    json_type = {"Content-Type": "application/json"}
    ten_mib = b'{"calendar_id": "' + calendar.encode() + b'", "title": "' + b"x" * (10 * MiB) + b'"}'
    refusals: dict[str, tuple[Callable[[], httpx.Response], int, list[str] | None]] = {
        "a 10 MiB body": (lambda: api.post("/events", content=ten_mib, headers=json_type), 413, None),
        "a 10 MiB chunked body": (
            lambda: api.post("/events", content=iter([ten_mib[i:i + MiB] for i in range(0, len(ten_mib), MiB)]),
                             headers=json_type), 413, None),
        "a 10 MiB PATCH": (lambda: api.patch(f"/events/{event['id']}", content=ten_mib,
                                             headers={**json_type, **guarded}), 413, None),
        "a 1 MB title": (lambda: post(title="x" * 1_000_000), 422, ["title"]),
        "a NUL in a title": (lambda: post(title="stand\x00up"), 422, ["title"]),
        "a bell in a description": (lambda: post(description="ding\x07"), 422, ["description"]),
        "an escape in a location": (lambda: post(location="\x1b[31mred"), 422, ["location"]),
        "a control character in an attendee's name": (
            lambda: post(attendees=[{"email": "ada@example.com", "name": "Ada\x0c"}]), 422, ["name"]),
        "an unknown time zone": (lambda: post(time_zone="Mars/Olympus_Mons"), 422, ["time_zone"]),
        "end before start": (lambda: post(start="2026-12-01T10:00:00Z", end="2026-12-01T09:00:00Z"), 422, ["end"]),
        "a long description": (lambda: post(description="x" * 8193), 422, ["description"]),
        "a long location": (lambda: post(location="x" * 1025), 422, ["location"]),
        "too many attendees": (
            lambda: post(attendees=[f"a{i}@example.com" for i in range(MAX_ATTENDEES + 1)]), 422, ["attendees"]),
        "a long attendee e-mail": (lambda: post(attendees=["a" * 320 + "@example.com"]), 422, ["email"]),
        "a long e-mail in an attendee": (
            lambda: post(attendees=[{"email": "a" * 320 + "@example.com"}]), 422, ["email"]),
        "an attendee that is neither": (lambda: post(attendees=[42]), 422, ["0"]),
        "a long attendee name": (
            lambda: post(attendees=[{"email": "ada@example.com", "name": "x" * 1025}]), 422, ["name"]),
        "a recurrence rule (not writable through the API)": (
            lambda: post(recurrence=["RRULE:FREQ=DAILY"]), 422, ["recurrence"]),
        "a body that is not UTF-8": (lambda: api.post("/events", content=b"\xff\xfe\xfd", headers=json_type), 422,
                                     ["body"]),
        "a PATCH with a NUL": (lambda: api.patch(f"/events/{event['id']}", json={"title": "a\x00"}, headers=guarded),
                               422, ["title"]),
        "a PATCH ending before it starts": (
            lambda: api.patch(f"/events/{event['id']}", json={"end": "2026-12-01T08:00:00Z"}, headers=guarded),
            422, ["end"]),
        "a malformed ETag": (lambda: api.patch(f"/events/{event['id']}", json={"title": "x"},
                                               headers={"If-Match": 'W/"999999999999999999999-zz", ,"'}), 412, None),
        "an ETag of another event": (lambda: api.delete(f"/events/{event['id']}",
                                                        headers={"If-Match": '"1-00000000"'}), 412, None),
        "an empty If-Match": (lambda: api.delete(f"/events/{event['id']}", headers={"If-Match": ""}), 428, None),
        "a malformed id": (lambda: api.delete("/events/not-an-id", headers={"If-Match": "*"}), 404, None),
        "an id with a NUL": (lambda: api.patch("/events/%00" + "a" * 31, json={"title": "x"},
                                               headers={"If-Match": "*"}), 404, None),
        "a conference on a malformed id": (lambda: api.post("/events/%00" + "a" * 31 + "/conference",
                                                            json={"provider": "zoom"}), 422, ["provider"]),
        "a conference removed from a malformed id": (lambda: api.delete("/events/%00" + "a" * 31 + "/conference"),
                                                     404, None),
        "a resolution of a malformed conflict id": (lambda: api.post("/conflicts/..%2F..%00/resolve",
                                                                     json={"keep": "local"}), 404, None),
    }
    for name, (send, status, fields) in refusals.items():
        response = send()
        assert response.status_code == status, (name, response.status_code, response.text[:300])
        if fields is not None:
            assert error_fields(response) == fields, name
        elif status != 422:
            assert isinstance(response.json()["detail"], str | dict), name
        assert snapshot(engine) == before, f"{name}: something was written"


def test_bad_queries_are_4xx_and_limit_is_capped(serve: Callable[..., httpx.Client], calendar: str) -> None:
    api = serve()
    assert error_fields(api.get("/events", params={"cursor": "not a cursor"})) == ["cursor"]
    assert error_fields(api.get("/events", params={"cursor": "\x00"})) == ["cursor"]
    assert error_fields(api.get("/events", params={"cursor": "W10"})) == ["cursor"]  # base64 of "[]"
    assert error_fields(api.get("/events", params={"cursor": "x" * 513})) == ["cursor"]
    assert error_fields(api.get("/events", params={"limit": MAX_LIMIT + 1})) == ["limit"]
    assert error_fields(api.get("/events", params={"limit": "lots"})) == ["limit"]
    assert error_fields(api.get("/events", params={"calendar_id": "\x00"})) == ["calendar_id"]
    assert api.get("/events", params={"limit": MAX_LIMIT}).status_code == 200
    assert api.get("/events/" + "f" * 32, headers={"If-None-Match": '"x", W/, *'}).status_code == 404


def test_the_body_cap_is_exact_and_counts_chunked_bodies(
    engine: Engine, serve: Callable[..., httpx.Client], calendar: str
) -> None:
    api = serve(Limits(max_body_bytes=2000))
    before = snapshot(engine)
    prefix = b'{"calendar_id": "' + calendar.encode() + b'", "start": "2026-12-01T09:00:00Z", ' \
             b'"end": "2026-12-01T10:00:00Z", "title": "Standup", "description": "'
    at_cap = prefix + b"x" * (2000 - len(prefix) - 2) + b'"}'
    assert len(at_cap) == 2000
    json_type = {"Content-Type": "application/json"}
    over = at_cap[:-2] + b'x"}'
    assert api.post("/events", content=over, headers=json_type).status_code == 413
    chunks = [over[i:i + 100] for i in range(0, len(over), 100)]
    assert api.post("/events", content=iter(chunks), headers=json_type).status_code == 413  # no Content-Length
    assert snapshot(engine) == before
    assert api.post("/events", content=iter([at_cap[:1000], at_cap[1000:]]), headers=json_type).status_code == 201
    assert api.post("/events", content=at_cap, headers=json_type).status_code == 201


def test_a_caller_over_its_rate_gets_429_with_retry_after(
    engine: Engine, serve: Callable[..., httpx.Client], calendar: str
) -> None:
    api = serve(Limits(rate=0.5, burst=3))
    answers = [api.get("/calendars") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    before = snapshot(engine)
    refused = api.post("/events", json={"calendar_id": calendar, "title": "Standup", **SLOT})
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["Retry-After"]) <= 2
    assert "rate limit" in refused.json()["detail"]
    assert snapshot(engine) == before
    # another key is another caller; the service's own probes and the page are not API calls
    assert api.get("/calendars", headers=auth_headers(engine, "read")).status_code == 200
    assert api.get("/calendars", headers=auth_headers(engine, "read")).status_code == 200
    root = str(api.base_url).removesuffix("/api/v1/")
    assert httpx.get(f"{root}/healthz").status_code == 200
    assert api.get("/calendars").status_code == 429


def test_the_caller_is_whatever_the_key_function_says(engine: Engine, serve: Callable[..., httpx.Client]) -> None:
    """Whatever function names the caller decides the buckets (here: one for everyone, whatever the key)."""
    api = serve(Limits(rate=0.5, burst=2, caller=lambda connection: "everyone"))
    assert api.get("/calendars", headers=auth_headers(engine, "read")).status_code == 200
    assert api.get("/calendars", headers=auth_headers(engine, "read")).status_code == 200
    assert api.get("/calendars", headers=auth_headers(engine, "read")).status_code == 429


def test_caller_key_hashes_the_key_and_falls_back_to_the_address() -> None:
    from starlette.requests import HTTPConnection

    def connection(*headers: tuple[bytes, bytes]) -> HTTPConnection:
        return HTTPConnection({"type": "http", "headers": list(headers), "client": ("192.0.2.7", 5000)})

    secret = "k" * 40
    assert caller_key(connection((b"authorization", f"Bearer {secret}".encode()))) == (
        "key:" + hashlib.sha256(secret.encode()).hexdigest())
    assert caller_key(connection((b"authorization", f"bearer  {secret}".encode()))).startswith("key:")
    assert caller_key(connection((b"authorization", b"Basic abc"))).startswith("auth:")
    assert caller_key(connection()) == "addr:192.0.2.7"
    assert secret not in caller_key(connection((b"authorization", f"Bearer {secret}".encode())))


def test_token_buckets_refill_at_the_rate_up_to_the_burst() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2, burst=4, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0  # one caller's bucket is its own
    now[0] = 0.5
    assert buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] = 100.0
    assert [buckets.take("a") for _ in range(5)][-1] > 0  # refilled to the burst, not beyond


def test_limit_settings_are_read_and_checked() -> None:
    assert Limits.from_settings({}) == Limits()
    assert Limits().max_body_bytes == DEFAULT_MAX_BODY_BYTES == MiB
    limits = Limits.from_settings({"CALSYNC_MAX_BODY_BYTES": "2048", "CALSYNC_RATE_LIMIT": "0",
                                   "CALSYNC_RATE_BURST": "7"})
    assert limits == Limits(max_body_bytes=2048, rate=0, burst=7)
    for name, value in (("CALSYNC_MAX_BODY_BYTES", "lots"), ("CALSYNC_RATE_LIMIT", "-1"),
                        ("CALSYNC_RATE_BURST", "0"), ("CALSYNC_RATE_LIMIT", "nan")):
        with pytest.raises(LimitSettingError, match=name):
            Limits.from_settings({name: value})


def test_a_405_lists_every_method_of_the_path(serve: Callable[..., httpx.Client]) -> None:
    api = serve()
    assert api.request("OPTIONS", "/events").headers["allow"] == "GET, POST"
    assert api.request("OPTIONS", "/events/" + "f" * 32).headers["allow"] == "GET, PUT, PATCH, DELETE"
    assert api.put("/conflicts").headers["allow"] == "GET"


def test_the_openapi_document_is_valid_and_states_every_error(engine: Engine) -> None:
    spec = create_app(engine).openapi()
    validate(spec)  # openapi-spec-validator: the published document is a valid OpenAPI 3.1 document
    operations = [(path, method, op) for path, methods in spec["paths"].items() for method, op in methods.items()]
    assert len(operations) >= 14
    for path, method, op in operations:
        assert path.startswith("/api/v1/"), path
        if path == "/api/v1/health":  # the one probe without a key
            continue
        documented = set(op["responses"])
        where = f"{method.upper()} {path}"
        assert {"401", "403", "413", "429"} <= documented, where
        assert "Retry-After" in op["responses"]["429"]["headers"], where
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in documented, where
        if "{event_id}" in path or "{conflict_id}" in path:
            assert "404" in documented, where
        if method in ("patch", "put", "delete") and path == "/api/v1/events/{event_id}":
            assert {"412", "428"} <= documented, where
        for status, answer in op["responses"].items():
            if status not in ("204", "304"):
                assert answer.get("content", {}).get("application/json", {}).get("schema"), (where, status)
    assert "409" in spec["paths"]["/api/v1/conflicts/{conflict_id}/resolve"]["post"]["responses"]
    links = spec["paths"]["/api/v1/events"]["post"]["responses"]["201"]["links"]
    assert {"GetEvent", "PatchEvent", "DeleteEvent"} <= set(links)


def test_password_guesses_are_slowed_per_address(engine: Engine) -> None:
    """The login form is open to anyone: past a small burst, an address gets 429 with Retry-After,
    whatever user name it tries, and a refused guess checks no password."""
    from calsync.service.limits import LOGIN_BURST

    from concurrent.futures import ThreadPoolExecutor

    server = serve_in_thread(create_app(engine))

    def guess(n: int) -> httpx.Response:
        return httpx.post(
            f"{server.url}/login", data={"user": f"u{n}", "password": "guess"}, follow_redirects=False, timeout=60
        )

    try:  # all at once: the limiter counts them as they arrive, before any password is checked
        with ThreadPoolExecutor(max_workers=LOGIN_BURST * 2) as pool:
            answers = list(pool.map(guess, range(LOGIN_BURST * 2)))
    finally:
        server.stop()
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) >= LOGIN_BURST // 2, [a.status_code for a in answers]
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
    assert len(answers) - len(refused) <= LOGIN_BURST + 3, "no more than the burst (and what refilled) got through"
