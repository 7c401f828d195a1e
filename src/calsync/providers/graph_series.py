"""Recurring series over Microsoft Graph: what calendarView delta hides, and what POST cannot say.

Reading
    calendarView delta lists occurrences and exceptions, never the series master. calsync models a
    series the Google / iCalendar way (a master with RRULE/EXDATE lines, plus exceptions pointing at it),
    so a delta round is *folded*: the first time a round meets a ``seriesMasterId``, the master is
    fetched (``GET /me/events/{id}``) and emitted before the item; plain occurrences (``type:
    occurrence``) are dropped, since the master's rule already implies them; exceptions and cancelled
    occurrences pass through with ``series_remote_id`` and ``original_start``.

    Graph keeps no list of deleted occurrences in v1.0 (``cancelledOccurrences`` is beta). An occurrence
    deleted in Outlook simply stops being listed by ``/events/{id}/instances``, so the master's EXDATEs
    are derived: the starts its pattern yields inside the sync window, minus the original starts the
    instances listing still holds. This is done only when the series' time zone is an IANA name or UTC
    (our own expansion must match Graph's exactly, or every occurrence after a DST change would look
    deleted); EXDATEs outside the window cannot be seen.

    ``@removed`` items are held back to the round's last page and dropped when their id is a master the
    round fetched alive: a delta round may report the id of a series that changed (it never shows in a
    calendar view), and that must not delete the series.

Writing
    Graph has no EXDATE. After a master is created with EXDATEs, or when an update adds some, the
    matching occurrences are deleted one by one (``DELETE /me/events/{occurrence id}``), which is what
    Outlook itself does. A master is PATCHed with ``recurrence`` only when the rule itself changed
    (compared with the master as Graph holds it now): re-sending it reshapes the series, which brings
    deleted occurrences back and drops exceptions, so every EXDATE is applied again after it. An EXDATE
    removed on our side alone is *not* propagated (the occurrence would only come back through a
    reshape that also wipes the series' exceptions in Outlook): a documented limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from calsync.model import (
    EventData,
    RemoteChange,
    RemoteDeletion,
    RemoteEvent,
    canonical_instant,
    canonical_time,
)
from calsync.providers.graph_mapping import (
    SeriesAnchor,
    _zone,
    anchor_of,
    change_from_graph,
    exdates_etag,
    expected_starts,
    recurrence_lines,
    same_recurrence,
    series_of,
)
from calsync.providers.http import RetryingClient, json_body, provider_error

Window = Callable[[], tuple[datetime, datetime]]


def _q(value: str) -> str:
    return quote(value, safe="")


def _json(response: httpx.Response) -> dict[str, Any] | None:
    """The body of a success, None for 404/410, the matching ProviderError otherwise."""
    if response.status_code in (404, 410):
        return None
    if response.status_code >= 300:
        raise provider_error(response, f"Graph {response.status_code}: {response.text[:200]}", None)
    return json_body(response) if response.content else {}


class GraphSeries:
    """Series reads and writes for one Graph mailbox (shares the provider's HTTP client)."""

    def __init__(self, http: RetryingClient, window: Window, me: str = "/me") -> None:
        self.http = http
        self.window = window
        self.me = me  # the mailbox's path: /me, or /users/{id} for an app-only token

    # --- reading ---------------------------------------------------------------------

    def fetch(self, event_id: str) -> dict[str, Any] | None:
        return _json(self.http.request("GET", f"{self.me}/events/{_q(event_id)}"))

    def instances(self, master_id: str, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
        """Every occurrence and exception of a series overlapping [lo, hi), following nextLinks."""
        url: str | None = f"{self.me}/events/{_q(master_id)}/instances"
        params: dict[str, Any] | None = {"startDateTime": _iso(lo), "endDateTime": _iso(hi), "$top": 1000}
        found: list[dict[str, Any]] = []
        while url:
            body = _json(self.http.request("GET", url, params=params)) or {}
            found.extend(body.get("value", []))
            url, params = body.get("@odata.nextLink"), None
        return found

    def deleted_occurrences(
        self, master: dict[str, Any], anchor: SeriesAnchor, window: tuple[datetime, datetime] | None = None
    ) -> list[str]:
        """EXDATEs inside the window: pattern starts that the instances listing no longer holds."""
        window = window or self.window()
        if not expected_in_window(master, anchor, window):
            return []  # nothing to compare: spare the instances request
        present = {
            _original_key(item["originalStart"], anchor)
            for item in self.instances(master["id"], *window)
            if item.get("originalStart") and not item.get("isCancelled")
        }
        return missing_starts(master, anchor, present, window)

    def master_change(self, master: dict[str, Any], window: tuple[datetime, datetime] | None = None) -> RemoteChange:
        """The master as calsync models it: RRULE from its pattern, EXDATEs from its missing occurrences."""
        plain = change_from_graph(master)
        if not isinstance(plain, RemoteEvent) or not plain.data.recurrence:
            return plain
        window = window or self.window()
        found = change_from_graph(master, self.deleted_occurrences(master, anchor_of(plain.data), window))
        # EXDATEs are seen only inside the window: outside it they are unknown (engine keeps the agreed ones)
        return replace(found, exdates_known=window) if isinstance(found, RemoteEvent) else found

    def get(self, event_id: str) -> RemoteEvent | None:
        """GET one event; a master comes with its EXDATEs."""
        raw = self.fetch(event_id)
        if raw is None:
            return None
        change = self.master_change(raw) if raw.get("type") == "seriesMaster" else change_from_graph(raw)
        return change if isinstance(change, RemoteEvent) else None

    # --- writing ---------------------------------------------------------------------

    def delete_occurrences(self, master_id: str, data: EventData, exdates: list[str]) -> int:
        """Delete the occurrences whose original start is in ``exdates`` (Graph's stand-in for EXDATE)."""
        if not exdates:
            return 0
        anchor = anchor_of(data)
        wanted = set(exdates)
        first, last = min(exdates), max(exdates)
        lo = _as_instant(first) - timedelta(days=2)
        hi = _as_instant(last) + timedelta(days=2)
        deleted = 0
        for item in self.instances(master_id, lo, hi):
            original = item.get("originalStart")
            if (
                item.get("type") in ("occurrence", "exception")
                and original
                and _original_key(original, anchor) in wanted
            ):
                response = self.http.request("DELETE", f"{self.me}/events/{_q(item['id'])}")
                if response.status_code not in (404, 410):
                    _json(response)
                deleted += 1
        return deleted

    def update_plan(self, remote_id: str, data: EventData) -> tuple[bool, list[str]]:
        """(send the recurrence?, EXDATEs to delete after the PATCH) for an update of a master.

        The rule is re-sent only when it differs from the master as Graph holds it now; then every
        EXDATE is applied again (the reshape brought the occurrences back). Otherwise only EXDATEs whose
        occurrence Graph still lists are deleted."""
        series = series_of(data)
        if series is None:
            return False, []
        recurrence, exdates = series
        current = self.fetch(remote_id)
        if current is None or not current.get("recurrence"):
            return True, exdates
        if not same_recurrence(current["recurrence"], recurrence, anchor_of(data)):
            return True, exdates
        return False, exdates  # delete_occurrences skips the ones already gone


def expected_in_window(master: dict[str, Any], anchor: SeriesAnchor, window: tuple[datetime, datetime]) -> list[str]:
    """Starts the master's pattern yields in the window; [] where our expansion cannot be trusted to
    match Graph's (a Windows zone name: it could disagree around DST and invent deletions)."""
    recurrence = master.get("recurrence") or {}
    zone_name = (recurrence.get("range") or {}).get("recurrenceTimeZone") or master.get("originalStartTimeZone")
    if not _same_zone(zone_name, anchor):
        return []
    try:
        return expected_starts(recurrence, anchor, *window)
    except (KeyError, ValueError):
        return []


def missing_starts(
    master: dict[str, Any], anchor: SeriesAnchor, present: set[str], window: tuple[datetime, datetime]
) -> list[str]:
    """The EXDATEs: expected starts in the window that no listed occurrence or exception holds."""
    return [start for start in expected_in_window(master, anchor, window) if start not in present]


def _same_zone(zone_name: Any, anchor: SeriesAnchor) -> bool:
    name = str(zone_name or "UTC")
    if name.upper() == "UTC":
        return anchor.zone_name == "UTC" or anchor.all_day
    return _zone(name) is not None and name == anchor.zone_name


def _original_key(original: str, anchor: SeriesAnchor) -> str:
    instant = datetime.fromisoformat(canonical_time(original, False))
    if anchor.all_day:
        return instant.astimezone(anchor.zone).date().isoformat()
    return canonical_instant(instant)


def _as_instant(boundary: str) -> datetime:
    if len(boundary) == 10:
        return datetime.fromisoformat(boundary).replace(tzinfo=UTC)
    return datetime.fromisoformat(boundary)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DeltaFolder:
    """Folds one delta round into masters + exceptions (see the module docstring).

    EXDATEs are computed over the round's window (the one its delta token tracks), so a master reads
    the same in every round until the window is re-based. A full round itself lists every occurrence
    and exception in the window, so there the masters are emitted at its end with the EXDATEs its own
    items imply: the master alone (read in a batch with the page's other new masters) instead of the
    master and its instances.
    Incremental rounds list only what changed, so there a master's EXDATEs come from its instances.

    The masters a page meets for the first time are read together, before the page is folded
    (`read_masters`: id -> event JSON, None where Graph answers 404/410; the provider's JSON batches
    of 20, where one GET a master cost a request each, 200 for 10,000 seeded events)."""

    def __init__(
        self,
        series: GraphSeries,
        window: tuple[datetime, datetime],
        *,
        full: bool,
        read_masters: Callable[[list[str]], dict[str, dict[str, Any] | None]],
    ) -> None:
        self.series = series
        self.read_masters = read_masters
        self.window = window
        self.full = full
        self.alive: dict[str, bool] = {}  # every master met this round: found (True) or gone (False)
        self.removed: list[str] = []
        # full round: masters held to the end, with the expected starts no listed item has claimed yet
        # (a series' occurrences come together, so these sets drain as fast as they fill)
        self.waiting: dict[str, tuple[RemoteEvent, dict[str, Any], SeriesAnchor, set[str]]] = {}

    def page(self, items: list[dict[str, Any]]) -> list[RemoteChange]:
        out: list[RemoteChange] = []
        met = [i.get("seriesMasterId") for i in items if "@removed" not in i]
        new = list(dict.fromkeys(m for m in met if m and m not in self.alive))
        masters = self.read_masters(new) if new else {}
        for item in items:
            if "@removed" in item:
                self.removed.append(item["id"])
                continue
            master_id = item.get("seriesMasterId")
            if master_id and master_id not in self.alive:
                out.extend(self._meet(master_id, masters[master_id]))
            held = self.waiting.get(master_id or "")
            if held and item.get("originalStart") and not item.get("isCancelled"):
                held[3].discard(_original_key(item["originalStart"], held[2]))
            if item.get("type") == "occurrence" and not item.get("isCancelled"):
                continue  # implied by the master's rule
            out.append(change_from_graph(item))
        return out

    def _meet(self, master_id: str, raw: dict[str, Any] | None) -> list[RemoteChange]:
        """The first item of a series in this round, its master read: emit it now, or hold it (full round)."""
        if raw is None:
            self.alive[master_id] = False
            return [RemoteDeletion(master_id)]
        plain = change_from_graph(raw)
        self.alive[master_id] = isinstance(plain, RemoteEvent)
        if self.full and isinstance(plain, RemoteEvent) and plain.data.recurrence:
            anchor = anchor_of(plain.data)
            expected = set(expected_in_window(raw, anchor, self.window))
            self.waiting[master_id] = (plain, raw["recurrence"], anchor, expected)
            return []
        return [self.series.master_change(raw, self.window)]

    def held_masters(self) -> Iterator[RemoteEvent]:
        """A full round's masters, with the EXDATEs its own items imply (emitted before its last page)."""
        while self.waiting:
            _, (plain, recurrence, anchor, missing) = self.waiting.popitem()
            exdates = sorted(missing)  # canonical starts sort in time order
            lines = recurrence_lines(recurrence, anchor, exdates)
            yield replace(
                plain,
                etag=exdates_etag(plain.etag, exdates),
                exdates_known=self.window,
                data=replace(plain.data, recurrence=lines or plain.data.recurrence),
            )

    def removals(self) -> list[RemoteChange]:
        """The round's removals, less the masters it found alive."""
        return [RemoteDeletion(rid) for rid in dict.fromkeys(self.removed) if not self.alive.get(rid)]
