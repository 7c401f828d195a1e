"""JSON batching (``POST /v1.0/$batch``) for the Graph emulator, as Microsoft documents it.

Request body ``{"requests": [{"id", "method", "url", "headers"?, "body"?, "dependsOn"?}]}``;
answer 200 ``{"responses": [{"id", "status", "headers", "body"}]}``. What is checked for the batch
as a whole (each a 400 ``BadRequest`` in Graph's error shape, nothing run):

* at most 20 requests, at least one ("Invalid batch payload format." for an empty or malformed body);
* ``id`` required and unique in the batch, compared case-insensitively ("Request Id X has to be
  unique in a batch.");
* ``method`` and ``url`` required; a write (POST / PATCH / PUT) needs a body *and* a Content-Type
  header ("Write request id : X does not contain Content-Type header or body.");
* ``dependsOn`` lists ids of earlier requests only.

Each inner request is run as if it had come over HTTP on its own (``api`` passes the dispatcher):
the outer Authorization header, the mailbox throttle (every inner request counts, the outer POST
does not: it never reaches Outlook), the fault rules matched against the inner method and path,
and one request-log entry per inner request marked with its batch id. So a throttled or faulted
inner request answers 429 / 5xx with its ``Retry-After`` *under the outer 200*
(``../shared/reference/provider-semantics.md`` 2.5 and its checklist 5.2). Only the Authorization
header (and Host, for links) is taken from the outer request: Prefer and the rest must be given
per inner request, in its ``headers``.

``url`` is relative to the version root (``/me/events/{id}``, or ``me/events`` without the slash);
an absolute URL is accepted when it names this service's ``/v1.0`` (what msgraph-sdk sends). Requests
run one after another in request order; a request whose dependency did not succeed answers 424.
Responses come in request order, or reversed with the ``batch_reverse_responses`` switch (Graph
documents that they may come in any order: clients must correlate by ``id``). A body is a JSON
object when the inner answer is JSON, ``null`` when there is none, base64 otherwise.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["MAX_BATCH_REQUESTS", "BatchItem", "BatchPayloadError", "parse_batch", "run_batch"]

MAX_BATCH_REQUESTS = 20
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT"})
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
GRAPH_HOSTS = frozenset({"graph.microsoft.com"})
_HEADER_NAMES = {
    "content-type": "Content-Type",
    "retry-after": "Retry-After",
    "location": "Location",
    "preference-applied": "Preference-Applied",
    "www-authenticate": "WWW-Authenticate",
    "etag": "ETag",
    "cache-control": "Cache-Control",
}
_DROPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
_INVALID = "Invalid batch payload format."


class BatchPayloadError(ValueError):
    """The batch as a whole is refused (400 BadRequest, with this message)."""


@dataclass
class BatchItem:
    """One inner request, checked: ``path`` is percent-decoded and relative to the version root."""

    id: str
    method: str
    url: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes | None
    depends_on: list[str] = field(default_factory=list)
    problem: str | None = None  # a URL this service cannot serve: the item answers 400, the rest run


def parse_batch(raw: bytes, api_prefix: str, own_host: str) -> list[BatchItem]:
    """The checked inner requests of a batch body; BatchPayloadError when the batch is refused whole."""
    try:
        payload = json.loads(raw) if raw.strip() else None
    except ValueError:
        raise BatchPayloadError(_INVALID) from None
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list) or not requests:
        raise BatchPayloadError(_INVALID)
    if len(requests) > MAX_BATCH_REQUESTS:
        raise BatchPayloadError(
            f"The batch has {len(requests)} requests; the limit is {MAX_BATCH_REQUESTS} requests per batch."
        )
    items: list[BatchItem] = []
    seen: set[str] = set()
    for spec in requests:
        item = _item(spec, api_prefix, own_host)
        key = item.id.lower()
        if key in seen:
            raise BatchPayloadError(f"Request Id {item.id} has to be unique in a batch.")
        for dependency in item.depends_on:
            if dependency.lower() not in seen:
                raise BatchPayloadError(
                    f"Request Id {item.id} depends on {dependency}, which is not an earlier request of the batch."
                )
        seen.add(key)
        items.append(item)
    return items


def _item(spec: Any, api_prefix: str, own_host: str) -> BatchItem:
    if not isinstance(spec, dict):
        raise BatchPayloadError(_INVALID)
    item_id, method, url = spec.get("id"), spec.get("method"), spec.get("url")
    if not isinstance(item_id, str) or not item_id.strip():
        raise BatchPayloadError("A request of the batch has no id.")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise BatchPayloadError(f"Request Id {item_id} has no valid method.")
    if not isinstance(url, str) or not url.strip():
        raise BatchPayloadError(f"Request Id {item_id} has no url.")
    method = method.upper()
    headers = spec.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise BatchPayloadError(_INVALID)
    depends = spec.get("dependsOn") or []
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise BatchPayloadError(_INVALID)
    has_type = any(k.lower() == "content-type" for k in headers)
    body = _body(spec["body"]) if spec.get("body") is not None else None
    if (body is not None and not has_type) or (method in WRITE_METHODS and (body is None or not has_type)):
        raise BatchPayloadError(f"Write request id : {item_id} does not contain Content-Type header or body.")
    path, query, problem = _target(url.strip(), api_prefix, own_host)
    return BatchItem(item_id, method, url, path, query, dict(headers), body, list(depends), problem)


def _body(value: Any) -> bytes:
    """A JSON value as sent, or a base64 string's bytes (Graph's form for a non-JSON body)."""
    if isinstance(value, str):
        try:
            text = value.replace("-", "+").replace("_", "/")
            return base64.b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise BatchPayloadError(_INVALID) from None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _target(url: str, api_prefix: str, own_host: str) -> tuple[str, str, str | None]:
    """(path under the version root, raw query, a problem or None)."""
    if "://" in url:
        parts = urlsplit(url)
        host = parts.netloc.lower()
        if host not in GRAPH_HOSTS and host != own_host.lower():
            return "", "", f"The URL {url} is not a Microsoft Graph URL."
        if not parts.path.startswith(api_prefix + "/"):
            return "", "", f"The URL {url} is not under {api_prefix}."
        path, query = parts.path[len(api_prefix) :], parts.query
    else:
        path, _, query = url.partition("?")
        path = path if path.startswith("/") else "/" + path
    path = unquote(path)
    if path.rstrip("/").lower() == "/$batch":
        return "", "", "A batch cannot contain a batch."
    return path, query, None


Dispatch = Callable[[BatchItem, Request], Awaitable[Response]]
Refusal = Callable[[int, str, str], Response]


async def run_batch(
    outer: Request, items: list[BatchItem], api_prefix: str, dispatch: Dispatch, refuse: Refusal, reverse: bool = False
) -> dict[str, Any]:
    """Run the items in order (``dispatch`` serves one as a request of its own) and collect the
    ``responses``; ``refuse(status, code, message)`` renders an item's error in Graph's shape."""
    statuses: dict[str, int] = {}
    responses: list[dict[str, Any]] = []
    for item in items:
        failed = [d for d in item.depends_on if not 200 <= statuses.get(d.lower(), 0) < 300]
        if item.problem is not None:
            response = refuse(400, "BadRequest", item.problem)
        elif failed:
            response = refuse(
                424, "FailedDependency", f"The request depends on request {failed[0]}, which did not succeed."
            )
        else:
            response = await dispatch(item, inner_request(outer, item, api_prefix))
        statuses[item.id.lower()] = response.status_code
        responses.append(response_item(item.id, response))
    if reverse:
        responses.reverse()
    return {"responses": responses}


def inner_request(outer: Request, item: BatchItem, api_prefix: str) -> Request:
    """A Starlette request for one inner request: the outer connection, auth and host, its own
    method, URL, headers and body."""
    headers: dict[str, str] = {}
    for name in ("host", "authorization"):
        value = outer.headers.get(name)
        if value is not None:
            headers[name] = value
    headers.update({k.lower(): v for k, v in item.headers.items() if k.lower() not in ("host", "authorization")})
    body = item.body or b""
    if body:
        headers["content-length"] = str(len(body))
    path = api_prefix + item.path
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": item.method,
        "scheme": outer.url.scheme,
        "server": outer.scope.get("server"),
        "client": outer.scope.get("client"),
        "root_path": outer.scope.get("root_path", ""),
        "path": path,
        "raw_path": path.encode("utf-8"),
        "query_string": item.query.encode("latin-1", "replace"),
        "headers": [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers.items()],
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def response_item(item_id: str, response: Response) -> dict[str, Any]:
    """One entry of ``responses``: id, status, headers (as Graph spells them), body."""
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        if name.lower() not in _DROPPED_HEADERS:
            headers[_HEADER_NAMES.get(name.lower(), name)] = value
    raw = bytes(response.body) if getattr(response, "body", None) else b""
    body: Any = None
    if raw:
        if "json" in headers.get("Content-Type", "").lower():
            try:
                body = json.loads(raw)
            except ValueError:
                body = base64.b64encode(raw).decode("ascii")
        else:
            body = base64.b64encode(raw).decode("ascii")
    return {"id": item_id, "status": response.status_code, "headers": headers, "body": body}
