"""A reference in-house conference system speaking calsync's signed webhook protocol.

The protocol is documented in ``calsync.conferencing.webhook``; this server is its executable
reference, so the webhook adapter is tested against a real HTTP peer, and in-house implementers
have a model to copy: verify the signature and the timestamp (``verify``), refuse replays
(``ReplayGuard``), honour idempotency keys on create, answer 404 for what is gone.

Endpoints: ``POST /hook`` (the webhook), and the admin surface shared with the other emulators
(never logged or faulted): ``POST /emulator/reset``, ``POST|GET|DELETE /emulator/faults`` (with
``"after_commit": true`` as in the Zoom emulator), ``GET|DELETE /emulator/requests``, and
``GET /emulator/meetings`` (every meeting, deleted ones marked ``"deleted": true``).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.conferencing.webhook import (
    ACTIONS,
    DEFAULT_WINDOW,
    MEETING_FIELDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    signature_problem,
)
from calsync.emulators.faults import (
    FaultInjector,
    RequestLog,
    common_admin_routes,
    with_faults,
)

__all__ = ["HOOK_PATH", "ConfhookEmulator", "HookError", "create_app"]

log = logging.getLogger(__name__)

HOOK_PATH = "/hook"
JOIN_BASE = "https://conf.example"
MAX_TEXT = 10_000


class HookError(Exception):
    """A request the receiver refuses: ``{"error": message}`` with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> Response:
        return JSONResponse({"error": self.message}, status_code=self.status)


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(meeting: dict[str, Any], name: str, *, optional: bool) -> str | None:
    value = meeting.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT or (not optional and name != "title" and not value):
        raise HookError(400, f"meeting.{name} must be a string" + ("" if optional else " (required)"))
    return value


def _attendees(meeting: dict[str, Any]) -> list[str]:
    value = meeting.get("attendees", [])
    if not isinstance(value, list) or not all(isinstance(a, str) and "@" in a for a in value):
        raise HookError(400, "meeting.attendees must be a list of e-mail addresses")
    return list(value)


def _meeting_fields(meeting: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields of a ``meeting`` object, validated."""
    if not isinstance(meeting, dict):
        raise HookError(400, "meeting must be a JSON object")
    out: dict[str, Any] = {}
    for name in names:
        if name == "attendees":
            out[name] = _attendees(meeting)
        else:
            out[name] = _text(meeting, name, optional=name in ("time_zone", "description"))
    return out


def _string(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise HookError(400, f"{key} must be a non-empty string")
    return value


class ConfhookEmulator:
    """Meetings in memory behind one lock; ``secret`` signs the webhook."""

    def __init__(self, secret: str, *, window: int = DEFAULT_WINDOW, join_base: str = JOIN_BASE, seed: int = 0) -> None:
        if not secret:
            raise ValueError("the webhook needs a secret")
        self.secret = secret
        self.window = window
        self.join_base = join_base.rstrip("/")
        self._seed = seed
        self._lock = threading.RLock()
        self.faults = FaultInjector(_fault_response, default_prefix=HOOK_PATH, seed=seed)
        self.commit_faults = FaultInjector(_fault_response, default_prefix=HOOK_PATH, seed=seed + 1)
        self.requests = RequestLog()
        self.replays = ReplayGuard(window)
        self._reset_state()

    def _reset_state(self) -> None:
        self._meetings: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, str] = {}
        self._rng = random.Random(self._seed)

    def reset(self) -> None:
        """Forget meetings, seen signatures, faults and the request log."""
        with self._lock:
            self._reset_state()
        self.replays.clear()
        self.faults.clear()
        self.commit_faults.clear()
        self.requests.clear()

    def meetings(self) -> list[dict[str, Any]]:
        """Every meeting ever made, oldest first, deleted ones included (``deleted: true``)."""
        with self._lock:
            return copy.deepcopy(list(self._meetings.values()))

    def handle(self, payload: Any) -> dict[str, Any]:
        """Carry out one verified request; the 200 answer, or HookError (400 / 404)."""
        if not isinstance(payload, dict):
            raise HookError(400, "the body must be a JSON object")
        action = payload.get("action")
        if action not in ACTIONS:
            raise HookError(400, f"action must be one of {list(ACTIONS)}")
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "create": self._create,
            "get": self._get,
            "update": self._update,
            "delete": self._delete,
        }
        with self._lock:
            return handlers[action](payload)

    @staticmethod
    def _answer(record: dict[str, Any]) -> dict[str, Any]:
        return {
            "conference_id": record["conference_id"],
            "join_url": record["join_url"],
            "details": dict(record["details"]),
        }

    def _live(self, payload: dict[str, Any]) -> dict[str, Any]:
        conference_id = _string(payload, "conference_id")
        record = self._meetings.get(conference_id)
        if record is None or record["deleted"]:
            raise HookError(404, f"no meeting {conference_id}")
        return record

    def _create(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = payload.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not key):
            raise HookError(400, "idempotency_key must be a non-empty string")
        fields = _meeting_fields(payload.get("meeting"), MEETING_FIELDS)
        known = self._meetings.get(self._by_key.get(key, "")) if key else None
        if known is not None and not known["deleted"]:
            return self._answer(known)
        conference_id = "cf_" + self._rng.randbytes(8).hex()
        now = _now_text()
        record = {
            "conference_id": conference_id,
            "join_url": f"{self.join_base}/m/{conference_id}",
            "details": {
                "passcode": f"{self._rng.randrange(10**6):06d}",
                "host_url": f"{self.join_base}/host/{conference_id}",
            },
            "meeting": fields,
            "idempotency_key": key,
            "created_at": now,
            "updated_at": now,
            "deleted": False,
        }
        self._meetings[conference_id] = record
        if key:
            self._by_key[key] = conference_id
        return self._answer(record)

    def _get(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._answer(self._live(payload))

    def _update(self, payload: dict[str, Any]) -> dict[str, Any]:
        names = payload.get("fields", list(MEETING_FIELDS))
        if not isinstance(names, list) or not all(n in MEETING_FIELDS for n in names):
            raise HookError(400, f"fields must be a list of names from {list(MEETING_FIELDS)}")
        changes = _meeting_fields(payload.get("meeting"), tuple(names))
        record = self._live(payload)
        record["meeting"].update(changes)
        record["updated_at"] = _now_text()
        return self._answer(record)

    def _delete(self, payload: dict[str, Any]) -> dict[str, Any]:
        record = self._live(payload)
        record["deleted"] = True
        record["updated_at"] = _now_text()
        return {"conference_id": record["conference_id"], "deleted": True}


def _fault_response(status: int, reason: str | None, rule: dict[str, Any]) -> Response:
    return HookError(status, reason or ("rate limited" if status == 429 else f"injected fault {status}")).response()


async def _handle_hook(emu: ConfhookEmulator, request: Request) -> Response:
    """Verify (signature, timestamp window, replay), parse, then carry out the request."""
    try:
        if request.method != "POST":
            raise HookError(405, "the webhook only accepts POST")
        raw = await request.body()
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        problem = signature_problem(emu.secret, timestamp, signature, raw, window=emu.window)
        if problem is not None:
            raise HookError(401, problem)
        if not emu.replays.first_time(str(timestamp), str(signature)):
            raise HookError(401, "replayed request")
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HookError(400, "the body is not valid JSON") from None
        return JSONResponse(emu.handle(payload))
    except HookError as err:
        return err.response()
    except Exception:  # a bug still answers in the protocol's error shape, never a bare traceback
        log.exception("confhook emulator: unhandled error")
        return HookError(500, "internal error").response()


def create_app(
    emulator: ConfhookEmulator | None = None,
    *,
    secret: str = "confhook-secret",  # noqa: S107 (the emulator's test HMAC secret, not a real credential)
) -> Starlette:
    """The Starlette app: ``POST /hook`` and the /emulator admin surface."""
    emu = emulator or ConfhookEmulator(secret)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    async def hook(request: Request) -> Response:
        response = await with_faults(emu.faults, emu.commit_faults, request, lambda: _handle_hook(emu, request))
        emu.requests.add(request.method, request.url.path, request.url.query, response.status_code, None)
        return response

    async def not_found(request: Request) -> Response:
        return HookError(404, "no such endpoint").response()

    app = Starlette(
        routes=[
            *_admin_routes(emu),
            Route(HOOK_PATH, hook, methods=methods),
            Route("/{rest:path}", not_found, methods=methods),
        ]
    )
    app.state.emulator = emu
    return app


def _admin_routes(emu: ConfhookEmulator) -> list[Route]:
    async def meetings(request: Request) -> Response:
        return JSONResponse({"meetings": emu.meetings()})

    return [
        *common_admin_routes(emu.reset, emu.faults, emu.commit_faults, emu.requests),
        Route("/emulator/meetings", meetings, methods=["GET"]),
    ]
