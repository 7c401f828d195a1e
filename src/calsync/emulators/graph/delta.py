"""calendarView/delta: rounds of pages with opaque skip and delta tokens that fix the window.

As documented (``../shared/reference/provider-semantics.md`` 2.1 and
https://learn.microsoft.com/graph/delta-query-events): the first round returns what is in the
window, later rounds what changed since the token, ``@removed`` for deletions and for items that
left the window; an expired or unknown token answers 410 (or the switched variant).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from calsync.emulators.graph.errors import GraphError
from calsync.emulators.graph.params import _Params, _window
from calsync.emulators.graph.recurrence import _overlaps
from calsync.emulators.graph.render import _producer, _removed_producer, _Render
from calsync.emulators.graph.state import API_PREFIX, _Calendar, _Event, _View
from calsync.emulators.graph.times import _fmt_instant


class _Delta(_Render):
    """Delta rounds over a calendar view; token state is sealed by the store's signer."""

    def delta(
        self, view: _View, cal_ref: str | None, params: _Params, path: str, page_size: int | None
    ) -> dict[str, Any]:
        """calendarView/delta: one page of a round; nextLink inside a round, deltaLink at its end."""
        for name in ("$filter", "$orderby", "$search", "$top", "$skip"):
            if name in params:
                raise GraphError(
                    400,
                    "ErrorInvalidUrlQuery",
                    f"The query parameter '{name}' is not supported with "
                    "change tracking over the 'CalendarView' resource.",
                )
        with self._lock:
            cal = self._calendar(view.user, cal_ref)
            state = self._delta_state(view, cal, params, path)
            view = replace(view, expand_props=state.get("x"))  # first-request options live in the token
            size = min(page_size or self.switches["delta_default_page_size"], self.switches["delta_max_page_size"])
            stream = self._full_stream(view, cal, state) if state["m"] == "full" else self._log_stream(view, cal, state)
            items, next_key = self._take_page(stream, size)
            out: dict[str, Any] = {"@odata.context": f"{view.base}{API_PREFIX}/$metadata#Collection(event)"}
            link = f"{view.base}{API_PREFIX}{path}"
            if next_key is not None:
                token = self._signer.seal({**state, "k": next_key, "t": "skip"})
                out["@odata.nextLink"] = f"{link}?$skiptoken={quote(token, safe='')}"
            else:
                token = self._signer.seal(
                    {
                        **{k: v for k, v in state.items() if k not in ("k", "f")},
                        "s": state["h"],
                        "t": "delta",
                        "i": int(time.time()),
                    }
                )
                out["@odata.deltaLink"] = f"{link}?$deltatoken={quote(token, safe='')}"
            out["value"] = items
            return out

    def _delta_state(self, view: _View, cal: _Calendar, params: _Params, path: str) -> dict[str, Any]:
        """The round's state: from a skip token (mid-round), a delta token (new round) or the window (first)."""
        skip, delta = params.get("$skiptoken"), params.get("$deltatoken")
        base = {"u": view.user.email, "c": cal.key.hex(), "e": self._epoch(view.user.email)}
        if skip:
            payload = self._open_token(view, cal, skip, "skip", path)
            return {k: v for k, v in payload.items() if k != "t"}
        if delta:
            payload = self._open_token(view, cal, delta, "delta", path)
            replay = self.switches["delta_replay_count"]
            return {
                **base,
                "ws": payload["ws"],
                "we": payload["we"],
                "m": "inc",
                "x": payload.get("x"),
                "f": max(0, payload["s"] - replay),
                "h": cal.seq,
                "k": None,
            }
        lo, hi = _window(params)
        return {
            **base,
            "ws": lo.timestamp(),
            "we": hi.timestamp(),
            "m": "full",
            "f": 0,
            "h": cal.seq,
            "k": None,
            "x": view.expand_props,
        }

    def _epoch(self, email: str) -> int:
        return self._delta_epoch + self._user_epochs.get(email, 0)

    def _open_token(self, view: _View, cal: _Calendar, token: str, kind: str, path: str) -> dict[str, Any]:
        opened = self._signer.open(token)
        payload: dict[str, Any] = opened if isinstance(opened, dict) else {}
        window = None
        if isinstance(payload.get("ws"), (int, float)) and isinstance(payload.get("we"), (int, float)):
            window = (payload["ws"], payload["we"])
        ok = (
            payload.get("t") == kind
            and payload.get("u") == view.user.email
            and payload.get("c") == cal.key.hex()
            and payload.get("e") == self._epoch(view.user.email)
        )
        ttl = self.switches["delta_token_ttl_seconds"]
        if ok and kind == "delta" and ttl is not None and time.time() - payload.get("i", 0) > ttl:
            ok = False
        if ok and not (isinstance(payload.get("h"), int) and 0 <= payload["h"] <= cal.seq):
            ok = False
        if not ok:
            raise self._sync_reset(view, path, window if payload.get("c") == cal.key.hex() else None)
        return payload

    def _sync_reset(self, view: _View, path: str, window: tuple[float, float] | None) -> GraphError:
        """The answer to an expired or unknown token, in the switched variant."""
        mode = self.switches["delta_expired_response"]
        if mode == "badRequest":
            return GraphError(
                400,
                "syncStateNotFound",
                "The sync state generation is not found. The delta token is "
                "expired and data must be synchronized again.",
            )
        headers: dict[str, str] = {}
        if window is not None:
            lo = _fmt_instant(datetime.fromtimestamp(window[0], UTC))
            hi = _fmt_instant(datetime.fromtimestamp(window[1], UTC))
            headers["Location"] = (
                f"{view.base}{API_PREFIX}{path}?startDateTime={quote(lo)}&endDateTime={quote(hi)}&$deltatoken="
            )
        if mode == "resyncRequired":
            return GraphError(
                410,
                "resyncRequired",
                "The delta token is no longer valid, and the app must reset the sync state.",
                headers,
            )
        return GraphError(
            410,
            "SyncStateNotFound",
            f"The sync state generation is not found; generation={self._delta_epoch}.",
            headers,
        )

    def _take_page(
        self, stream: Iterator[tuple[list[Any], Callable[[], dict[str, Any]] | None]], limit: int
    ) -> tuple[list[dict[str, Any]], list[Any] | None]:
        """Fill a page from a keyset stream; returns the items and the resume key (None when the round is done)."""
        items: list[dict[str, Any]] = []
        last: list[Any] | None = None
        scan_limit = self.switches["delta_page_scan_limit"]
        together = self.switches["delta_keep_series_together"]
        duplicate = self.switches["delta_duplicate_items"]
        for scanned, (key, produce) in enumerate(stream, 1):
            if produce is not None:
                if len(items) >= limit and not (together and last is not None and key[0] == last[0]):
                    return items, last
                item = produce()
                items.append(item)
                if duplicate and "@removed" not in item:
                    items.append(item)
            last = key
            if scan_limit is not None and scanned >= scan_limit:
                return items, last
        return items, None

    def _full_stream(
        self, view: _View, cal: _Calendar, state: dict[str, Any]
    ) -> Iterator[tuple[list[Any], Callable[[], dict[str, Any]] | None]]:
        """First round: everything now in the window, by calendar position; keys are [position, occurrence]."""
        lo, hi = datetime.fromtimestamp(state["ws"], UTC), datetime.fromtimestamp(state["we"], UTC)
        after = state.get("k")
        start = 0 if after is None else after[0] + (1 if after[1] is None else 0)
        for i in range(start, len(cal.order)):
            ev = cal.order[i]
            if ev.deleted or ev.calendar != cal.key or cal.positions.get(ev.key) != i:
                yield [i, None], None
                continue
            emitted = False
            for begin, target, occ in self._instances(ev, lo, hi):
                sub = int((target.original or begin).timestamp()) if ev.is_series else None
                if after is not None and i == after[0] and after[1] is not None and sub is not None and sub <= after[1]:
                    continue
                emitted = True
                yield [i, sub], _producer(self, view, target, occ)
                if sub is None:
                    break
            if not emitted:
                yield [i, None], None

    def _log_stream(
        self, view: _View, cal: _Calendar, state: dict[str, Any]
    ) -> Iterator[tuple[list[Any], Callable[[], dict[str, Any]] | None]]:
        """Later rounds: changes since the token, by log sequence; keys are [seq, index within the change]."""
        lo, hi = datetime.fromtimestamp(state["ws"], UTC), datetime.fromtimestamp(state["we"], UTC)
        after = state.get("k")
        start = state["f"] + 1 if after is None else after[0] + (1 if after[1] is None else 0)
        for seq in range(start, state["h"] + 1):
            entry = cal.log[seq - 1]
            if cal.last_seq.get(entry) != seq:
                yield [seq, None], None  # superseded by a later change of the same item
                continue
            outputs = self._entry_items(view, cal, entry, state["f"], lo, hi)
            skip_to = after[1] if after is not None and seq == after[0] and after[1] is not None else -1
            emitted = False
            for index, produce in enumerate(outputs):
                if index <= skip_to:
                    continue
                emitted = True
                yield [seq, index], produce
            if not emitted:
                yield [seq, None], None

    def _entry_items(
        self, view: _View, cal: _Calendar, entry: tuple[bytes, int | None], since: int, lo: datetime, hi: datetime
    ) -> list[Callable[[], dict[str, Any]]]:
        """What one change means to a window: current items, or @removed (gone, moved, or outside)."""
        key, occ = entry
        ev = view.user.events.get(key)
        if ev is None:
            return []
        here = not ev.deleted and ev.calendar == cal.key
        if occ is not None:
            return [self._instance_item(view, cal, ev, occ, here, lo, hi)]
        if not ev.is_series or not here:
            out: list[Callable[[], dict[str, Any]]] = []
            if here and _overlaps(ev.start.instant, ev.end.instant, lo, hi):
                out.append(_producer(self, view, ev, None))
            else:
                out.append(_removed_producer(self, view, ev, None, cal.key))
            out.extend(
                _removed_producer(self, view, ev, o, cal.key)
                for (c, o), died in sorted(ev.dead.items())
                if c == cal.key and died > since
            )
            return out
        out = [_removed_producer(self, view, ev, None, cal.key)]  # a master never shows: covers single -> series
        out.extend(_producer(self, view, target, o) for _, target, o in self._instances(ev, lo, hi))
        out.extend(
            _removed_producer(self, view, ev, o, cal.key)
            for (c, o), died in sorted(ev.dead.items())
            if c == cal.key and died > since
        )
        return out

    def _instance_item(
        self, view: _View, cal: _Calendar, master: _Event, occ: int, here: bool, lo: datetime, hi: datetime
    ) -> Callable[[], dict[str, Any]]:
        if here and occ not in master.cancelled and master.is_series:
            exc = master.exceptions.get(occ)
            if exc is not None and _overlaps(exc.start.instant, exc.end.instant, lo, hi):
                return _producer(self, view, exc, None)
            start = datetime.fromtimestamp(occ, UTC)
            duration = master.series.duration if master.series else timedelta()
            if (
                exc is None
                and master.series is not None
                and master.series.contains(start)
                and _overlaps(start, start + duration, lo, hi)
            ):
                return _producer(self, view, master, start)
        return _removed_producer(self, view, master, occ, cal.key)

    def expire_delta_tokens(self, email: str | None = None) -> int:
        """Admin: every skip and delta token (of one mailbox, or all) is now invalid."""
        with self._lock:
            if email is None:
                self._delta_epoch += 1
                return self._delta_epoch
            self._user_epochs[email] = self._user_epochs.get(email, 0) + 1
            return self._epoch(email)
