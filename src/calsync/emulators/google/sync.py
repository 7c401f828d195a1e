"""events.list and events.instances: full and incremental listings, sync tokens and keyset paging.

What a sync engine relies on (``../shared/reference/provider-semantics.md`` 1.1-1.4 and
https://developers.google.com/calendar/api/guides/sync): a full listing ends with a
``nextSyncToken``; an incremental one returns every change since its token, deletions as
cancelled tombstones; a token that is forged, foreign or invalidated answers 410; and paging
stays correct while the calendar changes (keys over ``order`` or ``log``, see ``state``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from calsync.emulators.common import json_text
from calsync.emulators.google.errors import (
    ApiError,
    _full_sync_required,
    _invalid,
    _not_found,
    _time_range_empty,
)
from calsync.emulators.google.params import (
    _SYNC_RESTRICTED,
    Params,
    _ListQuery,
    _max_results,
    _prop_filters,
)
from calsync.emulators.google.recurrence import _Occ
from calsync.emulators.google.render import _Render
from calsync.emulators.google.state import _Calendar, _Event


class _Listing(_Render):
    """Listings of a calendar's events and of one series' instances."""

    def list_events(self, user: str, cal_ref: str, params: Params) -> str:
        """events.list: full or incremental, keyset-paged; returns the response JSON text."""
        with self._lock:
            cal = self._calendar(user, cal_ref)
            query = self._list_query(cal, params)
            sync_seq = self._open_sync_token(cal, query.sync_token) if query.sync_token else None
            page = self._open_page_token(cal, query) if query.page_token else None
            high_water, epoch = (page["h"], page["e"]) if page else (cal.seq, cal.epoch)
            after = page["k"] if page else None
            now = time.time()
            if sync_seq is not None:
                stream = self._log_stream(cal, query, sync_seq, after, incremental=True, now=now)
            elif query.order_by == "updated":
                stream = self._log_stream(cal, query, 0, after, incremental=False, now=now)
            elif query.order_by == "startTime":
                stream = self._start_time_stream(cal, query, after, now)
            else:
                stream = self._ordinal_stream(cal, query, after, now)
            items, next_key = _take_page(stream, query.max_results, self.switches["page_scan_limit"])
            meta = self._events_meta(cal)
            if next_key is not None:
                meta["nextPageToken"] = self._signer.seal(
                    {"c": cal.id, "q": query.qhash, "k": next_key, "h": high_water, "e": epoch}
                )
            elif not (self.switches["no_sync_token_with_order_or_q"] and (query.order_by or query.text)):
                meta["nextSyncToken"] = self._sync_token(cal, query.sync_token, sync_seq, high_water, epoch, now)
            return _collection_json(meta, items)

    def list_instances(self, user: str, cal_ref: str, event_id: str, params: Params) -> str:
        """events.instances: the occurrences of one series, exceptions merged, keyset-paged."""
        with self._lock:
            cal = self._calendar(user, cal_ref)
            series = cal.events.get(event_id)
            if series is None:
                raise _not_found()
            time_min, time_max = params.time("timeMin"), params.time("timeMax")
            if time_min is not None and time_max is not None and time_max <= time_min:
                raise _time_range_empty()
            show_deleted = bool(params.bool("showDeleted", False))
            max_results = _max_results(params)
            qhash = params.semantic_hash(f"instances:{cal.id}:{event_id}")
            after = None
            token = params.get("pageToken")
            if token is not None:
                payload = self._signer.open(token)
                if not isinstance(payload, dict) or payload.get("q") != qhash:
                    raise _invalid("Invalid page token value.", "pageToken")
                after = payload["k"]
            original = params.time("originalStart")
            query = _ListQuery(
                max_results, token, None, True, show_deleted, None, time_min, time_max, None, None, None, [], [], qhash
            )
            stream = self._instances_stream(cal, series, query, after, original)
            items, next_key = _take_page(stream, max_results, self.switches["page_scan_limit"])
            meta = self._events_meta(cal)
            if next_key is not None:
                meta["nextPageToken"] = self._signer.seal({"q": qhash, "k": next_key})
            return _collection_json(meta, items)

    def _instances_stream(
        self, cal: _Calendar, series: _Event, query: _ListQuery, after: Any, original: float | None
    ) -> Iterator[tuple[Any, Callable[[], str] | None]]:
        if not series.is_series:
            return
        after_key = after[0] if after else None
        for inst in self._expand(
            cal,
            series,
            query,
            after_key,
            merge=True,
            include_cancelled=query.show_deleted,
            full=query.show_deleted,
            now=time.time(),
        ):
            if original is not None and inst.key != original:
                yield [inst.key], None
                continue
            yield [inst.key], inst.produce

    def _list_query(self, cal: _Calendar, params: Params) -> _ListQuery:
        """Validate events.list parameters in the order Google reports them."""
        max_results = _max_results(params)
        sync_token = params.get("syncToken")
        time_min, time_max = params.time("timeMin"), params.time("timeMax")
        updated_min = params.time("updatedMin", keep_ms=True)
        show_deleted_given = params.bool("showDeleted")
        single_events = bool(params.bool("singleEvents", False))
        if sync_token is not None:
            restricted = [p for p in _SYNC_RESTRICTED if p in params]
            if restricted or show_deleted_given is False:
                raise _invalid(
                    "Sync token cannot be used with other request restrictions.",
                    reason=self.switches["sync_token_restriction_reason"],
                )
        order_by = params.get("orderBy")
        if order_by is not None and order_by not in ("startTime", "updated"):
            raise _invalid("Invalid value for: orderBy", "orderBy")
        if order_by == "startTime" and not single_events:
            raise _invalid("The requested ordering is not available for the particular query.", "orderBy")
        if time_min is not None and time_max is not None and time_max <= time_min:
            raise _time_range_empty()
        horizon = self.switches["updated_min_horizon_seconds"]
        if updated_min is not None and horizon is not None and updated_min < time.time() - horizon:
            raise ApiError(
                410,
                "updatedMinTooLongAgo",
                "The requested minimum modification time lies too far in the past.",
                "calendar",
                "parameter",
                "updatedMin",
            )
        return _ListQuery(
            max_results=max_results,
            page_token=params.get("pageToken"),
            sync_token=sync_token,
            single_events=single_events,
            show_deleted=bool(show_deleted_given),
            order_by=order_by,
            time_min=time_min,
            time_max=time_max,
            updated_min=updated_min,
            text=params.get("q") or None,
            ical_uid=params.get("iCalUID"),
            private_props=_prop_filters(params, "privateExtendedProperty"),
            shared_props=_prop_filters(params, "sharedExtendedProperty"),
            qhash=params.semantic_hash(f"events:{cal.id}"),
        )

    def _open_sync_token(self, cal: _Calendar, token: str) -> int:
        """The change sequence a sync token names, or 410 when it is forged, foreign or invalidated."""
        payload = self._signer.open(token)
        if not isinstance(payload, dict) or payload.get("t") != "s" or payload.get("c") != cal.id:
            raise _full_sync_required()
        if payload.get("e") != cal.epoch or not isinstance(payload.get("s"), int) or not 0 <= payload["s"] <= cal.seq:
            raise _full_sync_required()
        ttl = self.switches["sync_token_ttl_seconds"]
        if ttl is not None and time.time() - payload.get("i", 0) / 1000.0 > ttl:
            raise _full_sync_required()
        return payload["s"]

    def _sync_token(
        self, cal: _Calendar, given: str | None, given_seq: int | None, seq: int, epoch: int, now: float
    ) -> str:
        """nextSyncToken: the same string back when nothing changed since the token given."""
        if given is not None and given_seq == seq and epoch == cal.epoch:
            return given
        return self._signer.seal({"t": "s", "c": cal.id, "e": epoch, "s": seq, "i": int(now * 1000)})

    def _open_page_token(self, cal: _Calendar, query: _ListQuery) -> dict[str, Any]:
        payload = self._signer.open(query.page_token or "")
        if not isinstance(payload, dict) or payload.get("c") != cal.id or payload.get("q") != query.qhash:
            raise _invalid("Invalid page token value: it does not belong to this query.", "pageToken")
        return payload

    def _events_meta(self, cal: _Calendar) -> dict[str, Any]:
        meta: dict[str, Any] = {"kind": "calendar#events", "etag": cal.events_etag, "summary": cal.summary}
        if cal.description is not None:
            meta["description"] = cal.description
        meta.update({"updated": cal.updated, "timeZone": cal.time_zone, "accessRole": "owner", "defaultReminders": []})
        return meta

    # -- streams: each yields (resume key, producer or None for a scanned-but-filtered candidate) --

    def _ordinal_stream(
        self, cal: _Calendar, query: _ListQuery, after: Any, now: float
    ) -> Iterator[tuple[Any, Callable[[], str] | None]]:
        """Full listing in creation order; keys are [ordinal, instance key or None]."""
        start, after_sub = (0, None) if after is None else (after[0] + (1 if after[1] is None else 0), after[1])
        order = cal.order
        for i in range(start, len(order)):
            ev = order[i]
            sub = after_sub if after is not None and i == after[0] else None
            if query.single_events and ev.recurring_event_id is not None and ev.recurring_event_id in cal.events:
                yield [i, None], None  # exceptions are merged into their series' expansion
            elif query.single_events and ev.is_series:
                emitted = False
                for inst in self._expand(
                    cal,
                    ev,
                    query,
                    sub,
                    merge=True,
                    include_cancelled=query.show_deleted,
                    full=query.show_deleted,
                    now=now,
                ):
                    emitted = True
                    yield [i, inst.key], inst.produce
                if not emitted:
                    yield [i, None], None
            else:
                yield [i, None], self._plain_producer(cal, ev, query, incremental=False)

    def _log_stream(
        self, cal: _Calendar, query: _ListQuery, from_seq: int, after: Any, incremental: bool, now: float
    ) -> Iterator[tuple[Any, Callable[[], str] | None]]:
        """Changes in sequence order (incremental sync, orderBy=updated); keys are [seq, instance key]."""
        if after is None:
            start, after_sub = from_seq + 1, None
        else:
            start, after_sub = after[0] + (1 if after[1] is None else 0), after[1]
        log_ = cal.log
        for seq in range(start, len(log_) + 1):
            ev = cal.events[log_[seq - 1]]
            if ev.change_seq != seq:
                yield [seq, None], None  # superseded by a later change of the same event
                continue
            sub = after_sub if after is not None and seq == after[0] else None
            if query.single_events and ev.is_series:
                emitted = False
                for inst in self._expand(
                    cal,
                    ev,
                    query,
                    sub,
                    merge=False,
                    include_cancelled=incremental or query.show_deleted,
                    full=query.show_deleted,
                    now=now,
                    filtered=not incremental,
                ):
                    emitted = True
                    yield [seq, inst.key], inst.produce
                if not emitted:
                    yield [seq, None], None
            else:
                yield [seq, None], self._plain_producer(cal, ev, query, incremental=incremental)

    def _start_time_stream(
        self, cal: _Calendar, query: _ListQuery, after: Any, now: float
    ) -> Iterator[tuple[Any, Callable[[], str] | None]]:
        """orderBy=startTime (singleEvents only): everything sorted by (start, id)."""
        entries: list[tuple[float, str, Callable[[], str]]] = []
        for ev in cal.order:
            if ev.recurring_event_id is not None and ev.recurring_event_id in cal.events:
                continue
            if ev.is_series:
                for inst in self._expand(
                    cal,
                    ev,
                    query,
                    None,
                    merge=True,
                    include_cancelled=query.show_deleted,
                    full=query.show_deleted,
                    now=now,
                ):
                    entries.append((inst.start_ts, inst.id, inst.produce))
            else:
                produce = self._plain_producer(cal, ev, query, incremental=False)
                if produce is not None:
                    entries.append((ev.start_ts, ev.id, produce))
        entries.sort(key=lambda e: (e[0], e[1]))
        for start_ts, eid, produce in entries:
            if after is not None and (start_ts, eid) <= (after[0], after[1]):
                continue
            yield [start_ts, eid], produce

    def _plain_producer(
        self, cal: _Calendar, ev: _Event, query: _ListQuery, incremental: bool
    ) -> Callable[[], str] | None:
        """Producer for a stored event as itself, or None when the query hides it."""
        if incremental:
            return lambda: self._fragment(cal, ev, query.show_deleted)
        if query.updated_min is not None and ev.updated_ts < query.updated_min:
            return None
        if ev.cancelled and not self._cancelled_visible(cal, ev, query):
            return None
        if not self._in_window(ev.start_ts, ev.span_end_ts if ev.is_series else ev.end_ts, query):
            return None
        if not _content_match(ev.data, ev.ical_uid, query):
            return None
        return lambda: self._fragment(cal, ev, query.show_deleted)

    @staticmethod
    def _cancelled_visible(cal: _Calendar, ev: _Event, query: _ListQuery) -> bool:
        """Google's showDeleted x singleEvents rules for a cancelled event in a full listing."""
        if query.show_deleted or query.updated_min is not None:
            return not (query.single_events and ev.is_series)
        if query.single_events or ev.recurring_event_id is None:
            return False
        series = cal.events.get(ev.recurring_event_id)
        return series is not None and not series.cancelled  # cancelled instance of a live series

    @staticmethod
    def _in_window(start_ts: float, end_ts: float, query: _ListQuery) -> bool:
        """timeMin bounds the END, timeMax the START, both exclusive."""
        if query.time_min is not None and end_ts <= query.time_min:
            return False
        return query.time_max is None or start_ts < query.time_max

    def _expand(
        self,
        cal: _Calendar,
        series: _Event,
        query: _ListQuery,
        after_key: float | None,
        merge: bool,
        include_cancelled: bool,
        full: bool,
        now: float,
        filtered: bool = True,
    ) -> Iterator[_Inst]:
        """Instances of a series by original start; stored exceptions replace (merge) or are left out."""
        if series.cancelled and not include_cancelled:
            return
        series_ok = not filtered or (
            _content_match(series.data, series.ical_uid, query)
            and (query.updated_min is None or series.updated_ts >= query.updated_min)
        )
        exceptions = cal.exceptions.get(series.id, {})
        items: dict[float, _Inst] = {}
        if series_ok:
            window = (query.time_min, query.time_max) if filtered else (None, None)
            for occ in self._compiled(cal, series).occurrences(window[0], window[1], now):
                if occ.key not in exceptions:
                    items[occ.key] = _Inst(
                        occ.key, occ.key, f"{series.id}_{occ.suffix}", _instance_producer(self, cal, series, occ, full)
                    )
        if merge:
            for key, exc_id in exceptions.items():
                exc = cal.events[exc_id]
                if exc.cancelled and not include_cancelled:
                    continue
                if query.updated_min is not None and exc.updated_ts < query.updated_min:
                    continue
                if not self._in_window(exc.start_ts, exc.end_ts, query):
                    continue
                if _content_match(exc.data, exc.ical_uid, query):
                    items[key] = _Inst(key, exc.start_ts, exc.id, _fragment_producer(self, cal, exc, full))
        for key in sorted(items):
            if after_key is None or key > after_key:
                yield items[key]


# ---------------------------------------------------------------------------------------------
# Listing helpers


@dataclass(slots=True)
class _Inst:
    """One instance in an expansion: original-start key, actual start, id, and its JSON producer."""

    key: float
    start_ts: float
    id: str
    produce: Callable[[], str]


def _instance_producer(emu: _Render, cal: _Calendar, series: _Event, occ: _Occ, full: bool) -> Callable[[], str]:
    return lambda: json_text(emu._instance_dict(cal, series, occ, full))


def _fragment_producer(emu: _Render, cal: _Calendar, ev: _Event, full: bool) -> Callable[[], str]:
    return lambda: emu._fragment(cal, ev, full)


def _content_match(data: dict[str, Any], ical_uid: str, query: _ListQuery) -> bool:
    """iCalUID, q (substring over text fields) and extended-property filters (all must match)."""
    if not query.has_content_filters:
        return True
    if query.ical_uid is not None and ical_uid != query.ical_uid:
        return False
    ext = data.get("extendedProperties") or {}
    for scope, wanted in (("private", query.private_props), ("shared", query.shared_props)):
        values = ext.get(scope) or {}
        if any(values.get(k) != v for k, v in wanted):
            return False
    if query.text:
        return query.text.lower() in _search_text(data)
    return True


def _search_text(data: dict[str, Any]) -> str:
    parts = [data.get(k) or "" for k in ("summary", "description", "location")]
    for att in data.get("attendees") or []:
        parts.append(att.get("email", ""))
        parts.append(att.get("displayName", ""))
    return "\n".join(parts).lower()


def _take_page(
    stream: Iterator[tuple[Any, Callable[[], str] | None]], limit: int, scan_limit: int | None
) -> tuple[list[str], Any | None]:
    """Fill a page from a keyset stream; returns the items and the resume key (None when done)."""
    items: list[str] = []
    last: Any = None
    for scanned, (key, produce) in enumerate(stream, 1):
        if produce is not None:
            if len(items) >= limit:
                return items, last
            items.append(produce())
        last = key
        if scan_limit is not None and scanned >= scan_limit:
            return items, last
    return items, None


def _collection_json(meta: dict[str, Any], items: list[str]) -> str:
    head = json_text(meta)
    return head[:-1] + ',"items":[' + ",".join(items) + "]}"
