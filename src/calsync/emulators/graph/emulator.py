"""The Microsoft Graph emulator: the store with every API operation, subscriptions and seeding."""

from __future__ import annotations

from typing import Any

from calsync.emulators.graph.calendars import _Calendars
from calsync.emulators.graph.delta import _Delta
from calsync.emulators.graph.errors import GraphError, _not_found
from calsync.emulators.graph.events import _Events
from calsync.emulators.graph.ids import _encode_calendar_id
from calsync.emulators.graph.seed import _seed_options, _Seeder
from calsync.emulators.graph.state import _Calendar, _User
from calsync.emulators.graph.subscriptions import _Subscriptions


class GraphEmulator(_Calendars, _Events, _Delta, _Subscriptions):
    """All emulator state, in memory, guarded by one lock (HTTP handlers and admin calls share it)."""

    # -- seeding --------------------------------------------------------------------------------

    def seed(self, ref: str, spec: Any) -> dict[str, Any]:
        """Create ``count`` realistic events at once (benchmarks need 100,000 in seconds); no notifications."""
        options = _seed_options(spec)
        with self._lock:
            user, cal = self._seed_target(ref)
            _Seeder(self, user, cal, options).run()
            return {
                "created": options["count"],
                "calendarId": _encode_calendar_id(user.header, cal.key),
                "user": user.email,
            }

    def _seed_target(self, ref: str) -> tuple[_User, _Calendar]:
        """A mailbox address (its default calendar) or a calendar id of any known mailbox."""
        if "@" in ref:
            user = self.ensure_user(ref.lower())
            return user, user.calendars[user.default]
        for user in self._users.values():
            try:
                return user, self._calendar(user, ref)
            except GraphError:
                continue
        raise _not_found()
