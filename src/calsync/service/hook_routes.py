"""The outbound webhook routes (`/api/v1/webhooks`): subscriptions, their delivery log, redelivery.

A subscription belongs to the caller's user: another user's is 404 like one that does not exist (an
admin key acts for the user named in X-Calsync-User, as everywhere). Creating, deleting, enabling and
redelivering need a write key. The signing secret is in the 201 answer of POST and nowhere else.
The delivery worker (calsync/hooks/delivery.py) does the sending; these routes only read and write rows.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from calsync.hooks import signing, urls
from calsync.service.api import PREFIX, SafeValidationRoute, is_row_id
from calsync.service.auth import CallerDep
from calsync.service.errors import API_ERRORS, ProblemOut
from calsync.statuses import ChangeKind
from calsync.store import accounts as account_store
from calsync.store import hooks as hook_store
from calsync.store.rows import DeliveryRow, WebhookRow
from calsync.views import jsonable

_DELIVERY_ID = re.compile(r"[0-9]{1,18}")
MAX_PAGE = 200


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"url": "https://app.example.com/calsync", "events": ["created", "updated"]}]},
    )

    url: str = Field(
        max_length=urls.MAX_URL_LENGTH,
        description=(
            "https, to a public address (checked now and before every delivery); http to loopback only when "
            f"the service runs with {urls.ALLOW_LOOPBACK_ENV}=1 (development and tests)"
        ),
    )
    events: list[ChangeKind] = Field(min_length=1, max_length=20, description="the change kinds to deliver")
    calendar_id: str | None = Field(default=None, max_length=64, description="only this calendar's changes")


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    calendar_id: str | None
    state: str = Field(description="active | disabled")
    disabled_reason: str | None = Field(description="why it was disabled (the failed delivery and its last error)")
    created_at: str
    updated_at: str


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="the signing secret (whsec_<base64>): shown in this answer only")


class WebhookListOut(BaseModel):
    webhooks: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: int
    message_id: str = Field(description="the webhook-id header: the same on every attempt")
    event_id: str
    kind: str
    position: int
    payload: dict[str, Any] = Field(description="the body sent")
    status: str = Field(description="pending | delivered | failed")
    attempts: int
    next_attempt_at: str | None
    last_attempt_at: str | None
    last_status: int | None = Field(description="the receiver's HTTP status at the last attempt")
    last_error: str | None
    created_at: str
    delivered_at: str | None


class DeliveryPageOut(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None = Field(description="pass back as `cursor` for older deliveries; null on the last page")


_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ProblemOut, "description": "No such webhook"}}


def _webhook_body(row: WebhookRow) -> dict[str, Any]:
    body: dict[str, Any] = jsonable({k: v for k, v in row.items() if k not in ("user_id", "last_position")})
    return body


def _delivery_body(row: DeliveryRow) -> dict[str, Any]:
    hidden = ("subscription_id", "lease_owner", "lease_until", "first_attempt_at")
    body: dict[str, Any] = jsonable({k: v for k, v in row.items() if k not in hidden})
    if row["status"] != "pending":
        body["next_attempt_at"] = None
    return body


def _not_found(webhook_id: str) -> HTTPException:
    return HTTPException(404, detail=f"no webhook with id {webhook_id!r}")


def _invalid(loc: tuple[str, ...], msg: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": list(loc), "msg": msg, "type": "value_error"}])


WebhookId = Annotated[str, Path(max_length=64)]


def hook_router(engine: Engine) -> APIRouter:
    router = APIRouter(prefix=PREFIX, route_class=SafeValidationRoute, responses=API_ERRORS, tags=["webhooks"])

    def owned(webhook_id: str, user_id: str) -> WebhookRow:
        if not is_row_id(webhook_id):
            raise _not_found(webhook_id)
        with engine.begin() as conn:
            row = hook_store.get_subscription(conn, webhook_id, user_id)
        if row is None:
            raise _not_found(webhook_id)
        return row

    @router.post("/webhooks", status_code=201, response_model=WebhookCreatedOut)
    def create_webhook(body: WebhookCreate, response: Response, caller: CallerDep) -> dict[str, Any]:
        """Subscribe a URL to the caller's changes of the given kinds (optionally of one calendar). The
        answer holds the signing secret, shown this once: deliveries carry `webhook-id`,
        `webhook-timestamp` and `webhook-signature` (Standard Webhooks, HMAC-SHA256)."""
        try:
            urls.check(body.url)
        except urls.RefusedUrl as exc:
            raise _invalid(("body", "url"), str(exc)) from None
        secret = signing.new_secret()
        with engine.begin() as conn:
            if body.calendar_id is not None and not account_store.calendar_exists(
                conn, body.calendar_id, caller.user_id
            ):
                raise _invalid(("body", "calendar_id"), f"no calendar with id {body.calendar_id!r}")
            row = hook_store.create_subscription(conn, caller.user_id, body.url, body.events, body.calendar_id, secret)
        response.headers["Location"] = f"{PREFIX}/webhooks/{row['id']}"
        return {**_webhook_body(row), "secret": secret}

    @router.get("/webhooks", response_model=WebhookListOut)
    def list_webhooks(caller: CallerDep) -> dict[str, Any]:
        """The caller's subscriptions (without their secrets)."""
        with engine.begin() as conn:
            rows = hook_store.list_subscriptions(conn, caller.user_id)
        return {"webhooks": [_webhook_body(r) for r in rows]}

    @router.get("/webhooks/{webhook_id}", response_model=WebhookOut, responses=_NOT_FOUND)
    def get_webhook(webhook_id: WebhookId, caller: CallerDep) -> dict[str, Any]:
        """One subscription: its state, and why it was disabled when it was."""
        return _webhook_body(owned(webhook_id, caller.user_id))

    @router.delete("/webhooks/{webhook_id}", status_code=204, response_class=Response, responses=_NOT_FOUND)
    def delete_webhook(webhook_id: WebhookId, caller: CallerDep) -> Response:
        """Unsubscribe: nothing more is sent (a request in flight finishes), the delivery log goes too."""
        owned(webhook_id, caller.user_id)
        with engine.begin() as conn:
            hook_store.delete_subscription(conn, webhook_id)
        return Response(status_code=204)

    @router.post("/webhooks/{webhook_id}/enable", response_model=WebhookOut, responses=_NOT_FOUND)
    def enable_webhook(webhook_id: WebhookId, caller: CallerDep) -> dict[str, Any]:
        """Make a disabled subscription active again: the changes made meanwhile are delivered (as far as
        the journal's retention keeps them), pending deliveries go out; failed ones stay failed."""
        owned(webhook_id, caller.user_id)
        with engine.begin() as conn:
            hook_store.enable(conn, webhook_id)
            row = hook_store.get_subscription(conn, webhook_id)
        assert row is not None
        return _webhook_body(row)

    @router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveryPageOut, responses=_NOT_FOUND)
    def list_deliveries(
        webhook_id: WebhookId,
        caller: CallerDep,
        cursor: Annotated[str | None, Query(max_length=32)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        """The delivery log, newest first: each message with its status, attempts and the receiver's last answer."""
        owned(webhook_id, caller.user_id)
        if cursor is not None and not _DELIVERY_ID.fullmatch(cursor):
            raise _invalid(("query", "cursor"), "is not a cursor this API gave out")
        with engine.begin() as conn:
            rows = hook_store.list_deliveries(conn, webhook_id, int(cursor) if cursor else None, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "deliveries": [_delivery_body(r) for r in rows],
            "next_cursor": str(rows[-1]["id"]) if more and rows else None,
        }

    @router.post(
        "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        status_code=202,
        response_model=DeliveryOut,
        responses={404: {"model": ProblemOut, "description": "No such webhook or delivery"}},
    )
    def redeliver(
        webhook_id: WebhookId, delivery_id: Annotated[str, Path(max_length=32)], caller: CallerDep
    ) -> dict[str, Any]:
        """Send a delivery again (same message id, a new retry bound). It goes out while the subscription
        is active (enable a disabled one), after any older pending delivery of the same event."""
        owned(webhook_id, caller.user_id)
        if not _DELIVERY_ID.fullmatch(delivery_id):
            raise HTTPException(404, detail=f"no delivery with id {delivery_id!r}")
        with engine.begin() as conn:
            if hook_store.get_delivery(conn, webhook_id, int(delivery_id)) is None:
                raise HTTPException(404, detail=f"no delivery with id {delivery_id!r}")
            hook_store.redeliver(conn, int(delivery_id))
            row = hook_store.get_delivery(conn, webhook_id, int(delivery_id))
        assert row is not None
        return _delivery_body(row)

    return router
