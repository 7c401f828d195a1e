"""Microsoft Graph (Outlook calendars) over httpx: calendarView delta, changeKey-guarded writes.

Change tracking
    A full listing is ``GET /me/calendars/{id}/calendarView/delta?startDateTime=&endDateTime=`` over a
    fixed window, ``[now + window[0], now + window[1]]`` (by default 30 days back, 365 days ahead).
    Graph expands recurring series inside the window into occurrences and exceptions (the series
    master itself never appears). Each Graph page becomes one ChangePage; ``@odata.nextLink`` is
    followed as given, and the round's ``@odata.deltaLink`` becomes the sync token.

    Graph fixes the window inside the delta token, so a token would track the same window for ever
    and the calendar would slowly slide out of it. The token we hand the engine is therefore
    ``"<window start, ISO 8601>|<deltaLink URL>"`` (opaque to the engine): when the window's start is
    more than ``rebaseline_after`` (7 days) older than a fresh window's start would be, list_changes
    raises SyncTokenInvalid before sending anything, and the engine does a full sync with
    reconciliation over a new window. A dead token (410 syncStateNotFound / resyncRequired, or 400
    syncStateNotFound) is SyncTokenInvalid too. Events that move out of the window are reported by
    Graph as ``@removed``, i.e. as deletions of the local copy.

Mapping
    Graph JSON <-> EventData lives in ``graph_mapping`` (see its docstring); recurring series (masters
    fetched for delta rounds, EXDATEs as deleted occurrences) in ``graph_series``.

Reading by id (fetch_events)
    A windowed listing cannot tell "deleted" from "left the window": calendarView delta reports both
    as ``@removed``. The engine therefore confirms such ids with ``fetch_events``, which reads them
    with JSON batching: ``POST /$batch`` with up to 20 ``GET /me/events/{id}`` each (with our Prefer
    header: batched requests do not inherit the outer request's headers). Items answering 429 / 5xx
    are sent again in a later batch after Retry-After or the RetryPolicy's backoff, for at most
    ``policy.attempts`` rounds; an item still failing then raises RateLimited. 404 / 410 is the only
    answer read as "deleted"; 401 raises AuthError, any other error its ProviderError. A series master
    gets its EXDATEs as get_event gives them (one instances request per master, outside the batch).

Idempotent creates
    The engine adopts an existing remote copy only when its remote id equals the local event id,
    which Graph ids never do (Graph chooses them). Creates are made idempotent with ``transactionId``
    instead: insert_event sends ``transactionId = remote_id or a fresh uuid`` (the engine passes the
    local event id), so a create whose answer was lost and is retried (by RetryingClient, or by a
    later push) gets the first event back (201 with the existing event) rather than a duplicate.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx

from calsync.model import (
    Account,
    ChangePage,
    EventData,
    RemoteCalendar,
    RemoteChange,
    RemoteEvent,
    canonical_time,
)
from calsync.providers.auth import BearerAuth, StaticToken, TokenSource
from calsync.providers.base import (
    Capabilities,
    Channel,
    ProviderError,
    RateLimited,
    SyncTokenInvalid,
)
from calsync.providers.graph_mapping import (
    change_from_graph,
    event_to_graph,
    graph_etag,
    series_of,
)
from calsync.providers.graph_series import DeltaFolder, GraphSeries
from calsync.providers.http import (
    RetryingClient,
    RetryPolicy,
    checked_json,
    is_retryable,
    provider_error,
    retry_after_seconds,
)

DEFAULT_BASE_URL = "https://graph.microsoft.com"
DEFAULT_PAGE_SIZE = 100
DEFAULT_WINDOW = (timedelta(days=-30), timedelta(days=365))
REBASELINE_AFTER = timedelta(days=7)
TOKEN_SEPARATOR = "|"  # noqa: S105 (between the parts of our sync token; no secret)
RESET_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
BATCH_LIMIT = 20  # requests per JSON batch (Graph refuses more)
READ_PREFER = 'outlook.timezone="UTC", IdType="ImmutableId"'


class GraphProvider:
    """One Microsoft 365 / Outlook mailbox: a bearer token, or a TokenSource that renews it."""

    name = "graph"
    # calendarView delta reports a deleted occurrence by its own id, never by its master's (the engine
    # re-reads the series masters when deletions of unknown ids arrive: engine/inbound._recheck_series);
    # a PATCH of a master's pattern or times drops its exceptions (the engine writes them again)
    capabilities = Capabilities(
        names_occurrences_only=True, series_change_drops_exceptions=True, server_assigns_ids=True
    )

    def __init__(
        self,
        token: str | TokenSource,
        base_url: str | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        window: tuple[timedelta, timedelta] = DEFAULT_WINDOW,
        retry: RetryPolicy | None = None,
        rebaseline_after: timedelta = REBASELINE_AFTER,
        mailbox: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        root = (base_url or DEFAULT_BASE_URL).rstrip("/")
        # the signed-in user's mailbox (/me), or, with an app-only token, the one named (/users/{id or UPN})
        self.me = f"/users/{_q(mailbox)}" if mailbox else "/me"
        source = StaticToken(token) if isinstance(token, str) else token
        headers = {"Prefer": READ_PREFER}
        self.http = RetryingClient(
            f"{root}/v1.0", headers, policy=retry, provider="graph", auth=BearerAuth(source), ca_file=ca_file
        )
        self.page_size = page_size
        self.window = window
        self.rebaseline_after = rebaseline_after
        self.series = GraphSeries(self.http, self._window, self.me)

    def _window(self) -> tuple[datetime, datetime]:
        now = datetime.now(UTC).replace(microsecond=0)
        return now + self.window[0], now + self.window[1]

    @classmethod
    def from_account(cls, account: Account, tokens: TokenSource | None = None, **options: Any) -> GraphProvider:
        """`tokens`: where an OAuth account's access tokens come from; without it, the stored raw token."""
        mailbox = account.credentials.get("mailbox")  # app-only accounts act for a named user
        ca_file = account.credentials.get("ca_file")  # an emulator's CA, trusted for its API as for its sign-in
        return cls(
            tokens or account.credentials["token"], account.base_url, mailbox=mailbox, ca_file=ca_file, **options
        )

    @property
    def request_count(self) -> int:
        return self.http.request_count

    def close(self) -> None:
        self.http.close()

    # --- reading ---------------------------------------------------------------------

    def list_calendars(self) -> list[RemoteCalendar]:
        found: list[RemoteCalendar] = []
        url: str | None = f"{self.me}/calendars"
        while url:
            body = _checked(self.http.request("GET", url))
            for item in body.get("value", []):
                found.append(
                    RemoteCalendar(
                        remote_id=item["id"],
                        name=item.get("name") or item["id"],
                        color=item.get("hexColor") or None,
                        primary=bool(item.get("isDefaultCalendar")),
                        access_role="owner" if item.get("canEdit", True) else "reader",
                    )
                )
            url = body.get("@odata.nextLink")
        return found

    def list_changes(self, calendar_id: str, sync_token: str | None) -> Iterator[ChangePage]:
        """calendarView/delta pages; the last one carries ``"<window start>|<deltaLink>"``."""
        full = sync_token is None
        now = datetime.now(UTC).replace(microsecond=0)
        if sync_token is None:
            start = now + self.window[0]
            url = f"{self.me}/calendars/{_q(calendar_id)}/calendarView/delta"
            params: dict[str, Any] | None = {
                "startDateTime": _iso(start),
                "endDateTime": _iso(start + self.window[1] - self.window[0]),
            }
        else:
            start, url = _split_token(sync_token)
            if now + self.window[0] - start > self.rebaseline_after:
                raise SyncTokenInvalid("the delta window is too old: re-baselining over a fresh window")
            params = None
        headers = {"Prefer": f'outlook.timezone="UTC", IdType="ImmutableId", odata.maxpagesize={self.page_size}'}
        # masters in, plain occurrences out (graph_series), EXDATEs over the round's own window
        folder = DeltaFolder(
            self.series, (start, start + self.window[1] - self.window[0]), full=full, read_masters=self._read_raw
        )
        while True:
            response = self.http.request("GET", url, params=params, headers=headers)
            if _is_reset(response):  # a dead delta token, or a skip token that died mid-round
                raise SyncTokenInvalid(
                    "delta token no longer valid", status=response.status_code, reason=_error_code(response)
                )
            body = _checked(response)
            items = folder.page(body.get("value", []))
            next_link = body.get("@odata.nextLink")
            if next_link:
                yield ChangePage(items=items, full=full, last=False)
                url, params = next_link, None
                continue
            delta_link = body.get("@odata.deltaLink")
            if not delta_link:
                raise ProviderError("calendarView/delta ended without @odata.deltaLink", status=response.status_code)
            held: list[RemoteChange] = list(folder.held_masters())  # a full round's series, each with its EXDATEs
            for at in range(0, len(held), self.page_size):
                yield ChangePage(items=held[at : at + self.page_size], full=full, last=False)
            del held
            items.extend(folder.removals())
            token = f"{_iso(start)}{TOKEN_SEPARATOR}{delta_link}"
            yield ChangePage(items=items, full=full, last=True, sync_token=token)
            return

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        return self.series.get(remote_id)  # a series master comes with its EXDATEs

    def listing_window(self) -> tuple[datetime, datetime] | None:
        """The window a fresh full listing would cover now: calendarView delta lists only
        ``[now + window[0], now + window[1]]``, so an event missing from a listing (or reported
        ``@removed``) may only have left it, and is confirmed by id (fetch_events)."""
        return self._window()

    def fetch_events(self, calendar_id: str, remote_ids: Sequence[str]) -> dict[str, RemoteEvent | None]:
        """Each id read as get_event would, through JSON batches of 20 GETs (see the module
        docstring). None only for 404 / 410 (or an event Graph reports cancelled, as get_event);
        every other failure raises, so a None is a proof of deletion."""
        raws = self._read_raw(list(dict.fromkeys(remote_ids)))
        return {remote_id: None if raw is None else self._read(remote_id, raw) for remote_id, raw in raws.items()}

    def _read_raw(self, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Events as Graph answers them (None for 404 / 410), through JSON batches of 20 GETs."""
        found: dict[str, dict[str, Any] | None] = {}
        for at in range(0, len(ids), BATCH_LIMIT):
            found.update(self._batch_get(ids[at : at + BATCH_LIMIT]))
        return found

    def _read(self, remote_id: str, raw: dict[str, Any]) -> RemoteEvent | None:
        """A fetched event as get_event returns it: a master with its EXDATEs, a cancelled one None."""
        try:
            change = self.series.master_change(raw) if raw.get("type") == "seriesMaster" else change_from_graph(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(f"Graph $batch: unreadable event {remote_id}: {exc!r}") from exc
        return change if isinstance(change, RemoteEvent) else None

    def _batch_get(self, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """``GET /me/events/{id}`` for up to 20 ids in one ``POST /$batch``: id -> event JSON, or None
        for 404 / 410. Throttled items (429 / 5xx) go again in a smaller batch after Retry-After or
        the backoff, for at most ``policy.attempts`` rounds, then RateLimited; other errors raise."""
        out: dict[str, dict[str, Any] | None] = {}
        pending = list(ids)
        policy = self.http.policy
        attempt = 0
        while pending:
            attempt += 1
            requests = [
                {
                    "id": str(n),
                    "method": "GET",
                    "url": f"{self.me}/events/{_q(rid)}",
                    "headers": {"Prefer": READ_PREFER},
                }
                for n, rid in enumerate(pending)
            ]
            answer = _checked(self.http.request("POST", "/$batch", json={"requests": requests}))
            items = _batch_items(answer, len(pending))
            throttled: list[tuple[str, httpx.Response]] = []
            for n, rid in enumerate(pending):
                response = items[str(n)]
                if response.status_code in (404, 410):
                    out[rid] = None
                elif is_retryable(response):
                    throttled.append((rid, response))
                elif response.status_code >= 300:
                    raise provider_error(
                        response,
                        f"Graph $batch GET event {response.status_code} "
                        f"{_error_code(response) or ''}: {_error_message(response)}".strip(),
                        _error_code(response),
                    )
                else:
                    out[rid] = _event_body(rid, response)
            if not throttled:
                break
            waits = [w for w in (retry_after_seconds(r) for _, r in throttled) if w is not None]
            wait = max(waits) if waits else None
            if attempt >= policy.attempts or (wait is not None and wait > policy.max_retry_after):
                last = throttled[0][1]
                raise RateLimited(
                    f"Graph $batch: {len(throttled)} event reads still throttled "
                    f"({last.status_code}) after {attempt} rounds",
                    status=last.status_code,
                    reason=_error_code(last),
                    retry_after=wait,
                )
            self.http._pause(attempt, wait, None)  # the client's own backoff (jitter, Retry-After, counted)
            pending = [rid for rid, _ in throttled]
        return out

    # --- writing ---------------------------------------------------------------------

    def insert_event(
        self, calendar_id: str, data: EventData, *, remote_id: str | None = None, series_remote_id: str | None = None
    ) -> RemoteEvent:
        """POST with a transactionId: a retried create gets the first event back, not a second one.
        An instance of a series we hold is written over that series' occurrence (PATCH of the
        instance id, which makes it an exception; writing it again is harmless)."""
        if data.original_start and series_remote_id:
            instance = self._instance_at(series_remote_id, data.original_start)
            if instance is not None:
                response = self.http.request("PATCH", f"{self.me}/events/{_q(instance)}", json=event_to_graph(data))
                return _as_event(_checked(response))
        body = event_to_graph(data, create=True)
        body["transactionId"] = remote_id or str(uuid.uuid4())
        response = self.http.request("POST", f"{self.me}/calendars/{_q(calendar_id)}/events", json=body)
        created = _as_event(_checked(response))
        series = series_of(data)
        if series is None:
            return created
        self.series.delete_occurrences(created.remote_id, data, series[1])  # Graph has no EXDATE
        return self.series.get(created.remote_id) or created

    def _instance_at(self, master_id: str, original_start: str) -> str | None:
        """The id of the series' occurrence (or exception) that was to start at `original_start`."""
        at = datetime.fromisoformat(
            f"{original_start}T00:00:00+00:00"
            if len(original_start) == 10
            else canonical_time(original_start, False).replace("Z", "+00:00")
        )
        for item in self.series.instances(master_id, at - timedelta(days=1), at + timedelta(days=2)):
            found = change_from_graph(item)
            if isinstance(found, RemoteEvent) and found.data.original_start == original_start:
                return str(item["id"])
        return None

    def update_event(self, calendar_id: str, remote_id: str, data: EventData, *, if_match: str | None) -> RemoteEvent:
        headers = {"If-Match": graph_etag(if_match)} if if_match else {}
        send_rule, exdates = self.series.update_plan(remote_id, data)
        response = self.http.request(
            "PATCH",
            f"{self.me}/events/{_q(remote_id)}",
            json=event_to_graph(data, recurrence=send_rule),
            headers=headers,
        )
        updated = _as_event(_checked(response))
        if series_of(data) is None:
            return updated
        self.series.delete_occurrences(remote_id, data, exdates)
        return self.series.get(remote_id) or updated

    def withdraw_create(self, calendar_id: str, data: EventData, *, remote_id: str) -> None:
        """Graph chooses ids, and the lost create's copy may lie outside any window calsync lists: the
        POST is replayed with the same transactionId (Graph answers with the first copy when there is
        one) and what it answers is deleted. The replay carries the times and nothing else, so when
        the first create never landed the bare copy made instead invites no one before it goes."""
        bare = EventData(
            title=data.title, start=data.start, end=data.end, all_day=data.all_day, time_zone=data.time_zone
        )
        body = {**event_to_graph(bare, create=True), "transactionId": remote_id}
        response = self.http.request("POST", f"{self.me}/calendars/{_q(calendar_id)}/events", json=body)
        created = _as_event(_checked(response))
        self.delete_event(calendar_id, created.remote_id, if_match=None)

    def delete_event(self, calendar_id: str, remote_id: str, *, if_match: str | None) -> None:
        headers = {"If-Match": graph_etag(if_match)} if if_match else {}
        response = self.http.request("DELETE", f"{self.me}/events/{_q(remote_id)}", headers=headers)
        if response.status_code in (404, 410):
            return  # already gone: deleting is idempotent
        _checked(response)

    def cancel_occurrence(
        self,
        calendar_id: str,
        series_remote_id: str,
        original_start: str,
        *,
        remote_id: str | None = None,
        if_match: str | None = None,
    ) -> RemoteEvent | None:
        """Outlook keeps nothing of a deleted occurrence: the occurrence (or exception) is deleted, by
        its own id when calsync holds one, else found in the series' /instances at its original start
        (none there: already gone, nothing written)."""
        target = remote_id or self._instance_at(series_remote_id, original_start)
        if target is not None:
            self.delete_event(calendar_id, target, if_match=if_match if remote_id else None)
        return None

    # --- push notifications: change-notification subscriptions ------------------------

    #: The longest subscription Graph grants on Outlook events. The stored official page says 4230
    #: minutes (newer pages say 10,080); asking for more is a 400, so the lower figure is the default.
    max_subscription_minutes: int = 4230
    #: Asked-for expiries stay this far under the limit: our clock may run a little ahead of Graph's.
    subscription_margin: timedelta = timedelta(minutes=1)

    def watch(
        self,
        calendar_id: str,
        channel_id: str,
        address: str,
        token: str,
        ttl_seconds: int | None = None,
    ) -> Channel:
        """POST /subscriptions for the calendar's events (created, updated, deleted).

        Graph first POSTs a validation token to the notification URL and to the lifecycle URL, and
        creates the subscription only if both echo it, so the receiver answers while this call is
        in flight. Our channel id rides in the URLs' query string (Graph keeps it on every delivery):
        the receiver finds the channel row by it even before it knows the subscription id. The
        secret token is the clientState, which Graph repeats in every notification."""
        url = _with_query(address, channel=channel_id)
        body = {
            "changeType": "created,updated,deleted",
            "notificationUrl": url,
            "lifecycleNotificationUrl": url,
            "resource": f"{self.me[1:]}/calendars/{calendar_id}/events",
            "expirationDateTime": _iso(self._subscription_expiry(ttl_seconds)),
            "clientState": token,
        }
        # not idempotent: a POST lost in transit may have made a subscription, and a second one would leak
        answer = _checked(self.http.request("POST", "/subscriptions", json=body, idempotent=False))
        return Channel(
            channel_id=channel_id,
            resource_id=str(answer["id"]),
            expiration=_parse_expiry(answer.get("expirationDateTime")),
            token=token,
        )

    def renew_channel(self, channel_id: str, resource_id: str, ttl_seconds: int | None = None) -> Channel:
        """PATCH the subscription's expirationDateTime: Graph renews in place (same id, URL and
        clientState), and a renewal also answers a reauthorizationRequired challenge. A subscription
        that is gone raises NotFoundError, and the engine makes a new one."""
        body = {"expirationDateTime": _iso(self._subscription_expiry(ttl_seconds))}
        answer = _checked(self.http.request("PATCH", f"/subscriptions/{_q(resource_id)}", json=body))
        return Channel(
            channel_id=channel_id,
            resource_id=str(answer.get("id") or resource_id),
            expiration=_parse_expiry(answer.get("expirationDateTime")),
        )

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """DELETE the subscription; one already gone (404) counts as stopped."""
        response = self.http.request("DELETE", f"/subscriptions/{_q(resource_id)}")
        if response.status_code in (404, 410):
            return
        _checked(response)

    def _subscription_expiry(self, ttl_seconds: int | None) -> datetime:
        """now + the asked-for lifetime, never beyond Graph's maximum for Outlook events."""
        longest = timedelta(minutes=self.max_subscription_minutes) - self.subscription_margin
        wanted = timedelta(seconds=ttl_seconds) if ttl_seconds else longest
        return datetime.now(UTC).replace(microsecond=0) + min(wanted, longest)


# --- helpers -------------------------------------------------------------------------------


def _with_query(url: str, **params: str) -> str:
    """`url` with parameters added to its query string (what it already carries is kept)."""
    parts = urlsplit(url)
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True) + list(params.items()))
    return urlunsplit(parts._replace(query=query))


def _parse_expiry(value: Any) -> datetime | None:
    """Graph's expirationDateTime (up to seven fractional digits, `Z`) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def _q(value: str) -> str:
    return quote(value, safe="")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _split_token(token: str) -> tuple[datetime, str]:
    start, sep, link = token.partition(TOKEN_SEPARATOR)
    try:
        if not sep or not link:
            raise ValueError(token)
        when = datetime.fromisoformat(start)
        if when.tzinfo is None:
            raise ValueError(token)
    except ValueError:
        raise SyncTokenInvalid("unrecognised Graph sync token") from None
    return when, link


def _error_code(response: httpx.Response) -> str | None:
    try:
        code = response.json()["error"]["code"]
        return code if isinstance(code, str) else None
    except (ValueError, KeyError, TypeError):
        return None


def _is_reset(response: httpx.Response) -> bool:
    if response.status_code == 410:
        return True
    return response.status_code == 400 and (_error_code(response) or "").lower() in RESET_CODES


def _checked(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a success, or the matching ProviderError."""
    return checked_json(response, "Graph", _error_code)


def _batch_items(answer: dict[str, Any], count: int) -> dict[str, httpx.Response]:
    """The ``responses`` of a batch answer by request id ("0".."count-1"), each as an httpx.Response
    (so the provider's usual status mapping applies); a missing or malformed one raises."""
    responses = answer.get("responses")
    if not isinstance(responses, list):
        raise ProviderError("Graph $batch answer without a responses list")
    found: dict[str, httpx.Response] = {}
    for item in responses:
        if not isinstance(item, dict) or not isinstance(item.get("status"), int):
            raise ProviderError(f"Graph $batch answer with a malformed item: {str(item)[:200]}")
        headers = item.get("headers")
        headers = headers if isinstance(headers, dict) else {}
        body = item.get("body")
        content = b"" if body is None else json.dumps(body).encode()
        found[str(item.get("id"))] = httpx.Response(
            item["status"], headers={str(k): str(v) for k, v in headers.items()}, content=content
        )
    missing = [str(n) for n in range(count) if str(n) not in found]
    if missing:
        raise ProviderError(f"Graph $batch answer lacks the requests {', '.join(missing)}")
    return found


def _event_body(remote_id: str, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise ProviderError(
            f"Graph $batch: malformed event for {remote_id} ({response.status_code})", status=response.status_code
        )
    return body


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _as_event(body: dict[str, Any]) -> RemoteEvent:
    change = change_from_graph(body)
    if not isinstance(change, RemoteEvent):
        raise ProviderError("Graph returned a cancelled event for a write")
    return change
