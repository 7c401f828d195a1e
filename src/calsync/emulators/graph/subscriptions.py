"""Subscriptions (change notifications): create after the validation handshake, renew, delete, and
the admin's lifecycle notifications (``../shared/reference/provider-semantics.md`` 2.4 and
https://learn.microsoft.com/graph/change-notifications-delivery-webhooks)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from calsync.emulators.common import receiver_allowed
from calsync.emulators.graph.errors import GraphError, _bad
from calsync.emulators.graph.push import Note
from calsync.emulators.graph.state import (
    API_PREFIX,
    TENANT_ID,
    _Store,
    _Subscription,
    _User,
)
from calsync.emulators.graph.times import _fmt_ts, _parse_instant

MAX_SUBSCRIPTIONS_PER_MAILBOX = 1000
CLIENT_STATE_MAX = 128
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


class _Subscriptions(_Store):
    """/subscriptions and the admin's view of them."""

    def check_subscription(self, email: str, body: dict[str, Any]) -> dict[str, Any]:
        """Validate a POST /subscriptions body (no handshake yet); returns the normalised fields."""
        user = self._user(email)
        change_types = _change_types(body.get("changeType"))
        url = _notification_url(body.get("notificationUrl"), "notificationUrl", self.switches["push_allow_http"])
        lifecycle = body.get("lifecycleNotificationUrl")
        if lifecycle is not None:
            lifecycle = _notification_url(lifecycle, "lifecycleNotificationUrl", self.switches["push_allow_http"])
        state = body.get("clientState")
        if state is not None and (not isinstance(state, str) or len(state) > CLIENT_STATE_MAX):
            raise _bad(f"clientState must be a string of at most {CLIENT_STATE_MAX} characters.", "InvalidRequest")
        with self._lock:
            calendar = self._resource_calendar(user, body.get("resource"))
        return {
            "change_types": change_types,
            "url": url,
            "lifecycle_url": lifecycle,
            "client_state": state,
            "resource": body["resource"],
            "calendar": calendar,
            "expiration": self._expiration(body.get("expirationDateTime")),
        }

    def _resource_calendar(self, user: _User, resource: Any) -> bytes | None:
        """me/events (mailbox, or default calendar by switch), me/calendar/events, me/calendars/{id}/events."""
        if not isinstance(resource, str) or not resource.strip():
            raise _bad("The resource is required.", "InvalidRequest")
        path = resource.strip().strip("/")
        match = re.fullmatch(r"(?i)(?:me|users/([^/]+))/(events|calendar/events|calendars/([^/]+)/events)", path)
        if match is None:
            raise _bad(f"Resource '{resource}' is not supported for change notifications.", "InvalidRequest")
        owner = match.group(1)
        if owner is not None and owner.lower() not in (user.email, user.guid):
            raise GraphError(
                403,
                "ExtensionError",
                "Operation: Create; Exception: [Status Code: Forbidden; "
                "Reason: Access is denied. Check credentials and try again.]",
            )
        if match.group(3) is not None:
            return self._calendar(user, match.group(3)).key
        if match.group(2).lower() == "calendar/events":
            return user.default
        return None if self.switches["me_events_subscription_scope"] == "mailbox" else user.default

    def _expiration(self, value: Any) -> float:
        when = _parse_instant(value)
        if when is None:
            raise _bad("expirationDateTime is required and must be an ISO 8601 date and time.", "InvalidRequest")
        now = time.time()
        limit = self.switches["subscription_max_minutes"]
        if when.timestamp() <= now:
            raise GraphError(400, "ExtensionError", "Subscription expiration must be in the future.")
        if when.timestamp() > now + limit * 60:
            raise GraphError(
                400, "ExtensionError", f"Subscription expiration can only be {limit} minutes in the future."
            )
        return when.timestamp()

    def add_subscription(self, email: str, fields: dict[str, Any], immutable: bool) -> dict[str, Any]:
        with self._lock:
            now = time.time()
            self._prune_subscriptions(now)
            if sum(1 for s in self._subs.values() if s.user == email) >= MAX_SUBSCRIPTIONS_PER_MAILBOX:
                raise GraphError(
                    403, "ExtensionError", "The maximum number of subscriptions for this mailbox has been reached."
                )
            sub = _Subscription(
                str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
                email,
                fields["resource"],
                fields["calendar"],
                fields["change_types"],
                fields["url"],
                fields["lifecycle_url"],
                fields["client_state"],
                fields["expiration"],
                immutable,
                now,
            )
            self._subs[sub.id] = sub
            return self._subscription_json(sub)

    def _prune_subscriptions(self, now: float) -> None:
        for sub_id in [s.id for s in self._subs.values() if not s.live(now)]:
            del self._subs[sub_id]

    def _own_subscription(self, email: str, sub_id: str) -> _Subscription:
        sub = self._subs.get(sub_id)
        if sub is None or sub.user != email or not sub.live(time.time()):
            raise GraphError(404, "ResourceNotFound", "The object was not found.")
        return sub

    def _subscription_json(self, sub: _Subscription) -> dict[str, Any]:
        user = self._users[sub.user]
        return {
            "id": sub.id,
            "resource": sub.resource,
            "applicationId": "00000000-0000-0000-0000-0000000ca15c",
            "changeType": ",".join(sub.change_types),
            "clientState": sub.client_state,
            "notificationUrl": sub.url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": sub.lifecycle_url,
            "expirationDateTime": _fmt_ts(sub.expiration),
            "creatorId": user.guid,
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }

    def list_subscriptions(self, email: str, base: str) -> dict[str, Any]:
        with self._lock:
            self._prune_subscriptions(time.time())
            return {
                "@odata.context": f"{base}{API_PREFIX}/$metadata#subscriptions",
                "value": [self._subscription_json(s) for s in self._subs.values() if s.user == email],
            }

    def get_subscription(self, email: str, sub_id: str) -> dict[str, Any]:
        with self._lock:
            return self._subscription_json(self._own_subscription(email, sub_id))

    def subscription_url_for_update(self, email: str, sub_id: str, body: dict[str, Any]) -> tuple[float, str | None]:
        """Validate a PATCH body: the new expiry, and a new notificationUrl when one is given."""
        with self._lock:
            self._own_subscription(email, sub_id)
            expiration = self._expiration(body.get("expirationDateTime"))
            url = body.get("notificationUrl")
            if url is not None:
                url = _notification_url(url, "notificationUrl", self.switches["push_allow_http"])
            return expiration, url

    def renew_subscription(self, email: str, sub_id: str, expiration: float, url: str | None) -> dict[str, Any]:
        with self._lock:
            sub = self._own_subscription(email, sub_id)
            sub.expiration = expiration
            sub.paused = False
            if url is not None:
                sub.url = url
            return self._subscription_json(sub)

    def reauthorize_subscription(self, email: str, sub_id: str) -> None:
        with self._lock:
            self._own_subscription(email, sub_id).paused = False

    def delete_subscription(self, email: str, sub_id: str) -> None:
        with self._lock:
            sub = self._own_subscription(email, sub_id)
            del self._subs[sub.id]

    def admin_subscriptions(self) -> list[dict[str, Any]]:
        with self._lock:
            now = time.time()
            return [
                {
                    **self._subscription_json(s),
                    "user": s.user,
                    "live": s.live(now),
                    "paused": s.paused,
                    "immutableIds": s.immutable,
                    "notified": s.notified,
                    "skipped": s.skipped,
                }
                for s in self._subs.values()
            ]

    def expire_subscription(self, sub_id: str) -> bool:
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                return False
            sub.expiration = min(sub.expiration, time.time())
            return True

    def lifecycle(self, sub_id: str, event: str, pause: bool = False) -> dict[str, Any]:
        """Admin: send a lifecycle notification; subscriptionRemoved also removes the subscription."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"event must be one of {list(LIFECYCLE_EVENTS)}")
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                raise KeyError(sub_id)
            if sub.lifecycle_url is None:
                raise LookupError("the subscription has no lifecycleNotificationUrl")
            item = {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": _fmt_ts(sub.expiration),
                "tenantId": TENANT_ID,
                "clientState": sub.client_state,
                "lifecycleEvent": event,
            }
            if event == "subscriptionRemoved":
                del self._subs[sub.id]
            if event == "reauthorizationRequired" and pause:
                sub.paused = True
            url = sub.lifecycle_url
        self.push.enqueue([Note(url, item, "lifecycle", sub_id)])
        return item


def _change_types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str) or not value.strip():
        raise _bad("changeType is required.", "InvalidRequest")
    kinds = tuple(p.strip() for p in value.split(","))
    if any(k not in ("created", "updated", "deleted") for k in kinds) or len(set(kinds)) != len(kinds):
        raise _bad(f"changeType '{value}' is not valid; use created, updated and/or deleted.", "InvalidRequest")
    return kinds


def _notification_url(value: Any, name: str, allow_http: bool) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} is required.", "InvalidRequest")
    if not receiver_allowed(value, allow_http):
        raise _bad(f"The {name} must use the HTTPS protocol.", "InvalidRequest")
    return value
