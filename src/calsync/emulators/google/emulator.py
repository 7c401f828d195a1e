"""The Google Calendar emulator: the store with every API operation, push channels and seeding."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from calsync.emulators.google.calendars import _Calendars
from calsync.emulators.google.errors import ApiError, _not_found
from calsync.emulators.google.events import _Events
from calsync.emulators.google.push import PushError, parse_watch
from calsync.emulators.google.seed import _seed_options, _Seeder
from calsync.emulators.google.state import API_PREFIX
from calsync.emulators.google.sync import _Listing


class GoogleEmulator(_Calendars, _Events, _Listing):
    """All emulator state, in memory, guarded by one lock (HTTP handlers and tests share it)."""

    # -- push notifications ---------------------------------------------------------------------

    def watch_events(self, user: str, cal_ref: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        """events.watch: open a channel on a calendar the user owns; its sync message is queued at once."""
        with self._lock:
            cal = self._calendar(user, cal_ref)
            uri = f"{base_url}{API_PREFIX}/calendars/{quote(cal_ref, safe='@')}/events?alt=json"
            try:
                request = parse_watch(
                    body,
                    int(time.time() * 1000),
                    bool(self.switches["push_allow_http"]),
                    int(self.switches["push_max_ttl_seconds"]),
                )
                return self.push.open_channel(request, cal.id, user, uri).resource()
            except PushError as err:
                raise _push_api_error(err) from None

    def stop_channel(self, user: str, body: dict[str, Any]) -> None:
        """channels.stop: only the user who created the channel may stop it."""
        try:
            self.push.stop(body, user)
        except PushError as err:
            raise _push_api_error(err) from None

    # -- seeding --------------------------------------------------------------------------------

    def seed(self, calendar_id: str, spec: Any) -> int:
        """Create ``count`` realistic events in one go (benchmarks need 100,000 in seconds)."""
        options = _seed_options(spec)
        with self._changes():
            cal = self._calendars.get(calendar_id)
            if cal is None and _is_user_email(calendar_id):
                cal = self.ensure_user(calendar_id)
            if cal is None:
                raise _not_found()
            _Seeder(self, cal, options).run()
            return options["count"]

    def invalidate_tokens(self, calendar_id: str) -> int:
        """Every sync token issued for the calendar now answers 410; returns the new epoch."""
        with self._lock:
            cal = self._calendars.get(calendar_id)
            if cal is None:
                raise _not_found()
            cal.epoch += 1
            return cal.epoch


def _push_api_error(err: PushError) -> ApiError:
    return ApiError(
        err.status, err.reason, err.message, err.domain, "parameter" if err.location else None, err.location
    )


def _is_user_email(calendar_id: str) -> bool:
    return "@" in calendar_id and not calendar_id.endswith("@group.calendar.google.com")
