"""The contract every conference system adapter implements (Zoom, a signed webhook, Jitsi)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class MeetingSpec:
    """The event fields a conference depends on. A change in any of them is a conference update."""

    title: str
    start: str  # canonical: UTC RFC 3339 "YYYY-MM-DDTHH:MM:SSZ", or "YYYY-MM-DD" for all-day
    end: str
    time_zone: str | None = None
    description: str | None = None
    attendees: tuple[str, ...] = ()  # e-mail addresses, sorted

    def fingerprint(self) -> str:
        """Hash of every field above: equal fingerprints mean 'no call to the conference system'."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def changed_fields(self, other: MeetingSpec | None) -> list[str]:
        """Names of the fields that differ from `other` (all of them when there is no other)."""
        if other is None:
            return list(asdict(self))
        mine, theirs = asdict(self), asdict(other)
        return [k for k in mine if mine[k] != theirs[k]]


@dataclass
class Conference:
    """A meeting as the conference system describes it."""

    provider: str  # the adapter's `name`
    conference_id: str
    join_url: str
    details: dict[str, Any] = field(default_factory=dict)  # passcode, dial-in numbers, host URL...


class ConferenceError(Exception):
    """The conference system failed. `retryable` work goes back to the conference outbox."""

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class ConferenceAdapter(Protocol):
    """All operations are idempotent: a retried create makes no second meeting (same
    `idempotency_key`), and deleting a meeting that is already gone is success."""

    name: str  # "zoom" | "webhook" | "jitsi"
    solution_name: str  # shown as conferenceSolution.name on calendar events; identifies our conferences
    request_count: int  # HTTP requests made so far (0 for adapters without a remote API)

    def create(self, spec: MeetingSpec, *, idempotency_key: str, maybe_exists: bool = True) -> Conference:
        """Make a meeting. `maybe_exists` says an earlier attempt with this key may have succeeded
        unseen (the caller knows: it records its intent first), so the adapter must look before it
        posts; False lets adapters that pay for the lookup skip it."""
        ...

    def get(self, conference_id: str) -> Conference | None:
        """The meeting, or None when it no longer exists."""
        ...

    def update(self, conference_id: str, spec: MeetingSpec, fields: list[str]) -> Conference | None:
        """Change the meeting to match `spec`; `fields` names what changed (adapters send only those).

        Returns the meeting when the system answered with it (its join details may have changed),
        or None when the answer carried none (the join details are unchanged)."""
        ...

    def delete(self, conference_id: str) -> None: ...

    def close(self) -> None: ...
