"""CalDAV (RFC 4791) over httpx, with RFC 6578 sync-collection for incremental sync.

Plain httpx and a few xml.etree helpers rather than python-caldav: calsync needs exact control of
every request (If-Match / If-None-Match, Depth, batch sizes, the 507 continuation, the invalid
token signal, request counts) and its own mapping to EventData; python-caldav's object model and
its own fallbacks would sit between the engine and those answers.

Ids
- A calendar's id is its collection path ("/alice/calendar/").
- An event's id is its href relative to the calendar: `<name>` for `<collection><name>.ics`
  (the name kept percent-encoded as the server spells it), or the absolute path for any other
  href. calsync creates `<local id>.ics`, so the remote id of its own creates *is* the local event
  id: that is what lets the engine adopt the copy of a create whose answer was lost (it only adopts
  remote ids equal to local ids), instead of importing it a second time.
- An overridden instance of a series is `<id>#<recurrence key>` (see providers/ical/).

Sync tokens (one opaque string per binding)
- `dav:<DAV:sync-token>`: RFC 6578. An empty token lists everything; changed members come back
  with their ETag and are fetched with calendar-multiget in batches (`batch_size` hrefs, one
  ChangePage each); removed members (404) become RemoteDeletions; a 507 on the request-URI
  (truncated answer) is continued with the token that came with it. Any 4xx to a REPORT that
  carries a token (403/409/412 with DAV:valid-sync-token in practice) raises SyncTokenInvalid.
- `etags:<digest>` (fallback for servers without sync-collection): a full listing is a Depth-1
  PROPFIND of the members' ETags, then multiget; the token is a digest of the (href, ETag) list.
  A later run PROPFINDs again: same digest -> one empty page and the same token (one request);
  a different digest -> SyncTokenInvalid, so the engine does a full listing with reconciliation
  (which finds deletions; unchanged ETags apply as no-ops). Simple and correct, but every change
  costs a full multiget.

No push notifications: `watch` raises ProviderError and the scheduler's poll timer covers it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlparse
from xml.sax.saxutils import escape

import httpx

from calsync.model import (
    Account,
    ChangePage,
    EventData,
    RemoteCalendar,
    RemoteChange,
    RemoteDeletion,
    RemoteEvent,
)
from calsync.providers.base import (
    AlreadyExists,
    Capabilities,
    Channel,
    NotFoundError,
    PreconditionFailed,
    ProviderError,
    SyncTokenInvalid,
    fetch_each,
)
from calsync.providers.http import (
    RetryingClient,
    RetryPolicy,
    provider_error,
)
from calsync.providers.webdav import (
    APPLE,
    CALDAV,
    CS,
    DAV,
    _access_role,
    _hrefs,
    _is_calendar,
    _multistatus,
    _Response,
    _t,
    _takes_events,
    _text,
    _tzid,
)

log = logging.getLogger(__name__)


class _LazyIcal:
    """providers/ical/ (and icalendar, ~50 ms to import) loaded on first use: a sync that finds
    no change (one REPORT) never parses iCalendar, and `calsync sync` is a whole process."""

    def __getattr__(self, name: str) -> Any:
        import calsync.providers.ical as module  # (the subpackage itself, not through providers/__init__)

        globals()["ical"] = module
        return getattr(module, name)


if TYPE_CHECKING:
    import calsync.providers.ical as ical
else:
    ical = _LazyIcal()

XML_HEADERS = {"Content-Type": "application/xml; charset=utf-8"}
ICS_TYPE = "text/calendar; charset=utf-8"
# hrefs per calendar-multiget: bounded (a stock Radicale refuses an answer holding over 10,000 VEVENTs),
# and large enough that the server's fixed cost per request is spread thin (Radicale: ~0.34 ms per
# member at 200, ~0.25 ms at 1,000); 500 keeps the service's peak memory well below vdirsyncer's
BATCH_SIZE = 500
# changes per page the engine stores in one transaction (at least one batch): each commit rewrites the
# index pages it touched, so fewer, larger commits write less; memory stays bounded by the page
PAGE_EVENTS = 500
READ_AHEAD = 2  # multiget answers in flight while the current one is parsed and stored
DAV_TOKEN, ETAGS_TOKEN = "dav:", "etags:"
CTAG_SEPARATOR = ";ctag:"  # an ETag-listing token also records the collection's getctag
SAFE_PATH = "/:@!$&'()*+,;=-._~"
# an href that normalising would leave as it is: absolute, only unreserved characters, no dot segments
_PLAIN_PATH = re.compile(r"/(?:[A-Za-z0-9_~@-][A-Za-z0-9._~@-]*/?|\.[A-Za-z0-9_~@-][A-Za-z0-9._~@-]*/?)*\Z")


_UNCHANGED = object()  # what a `_rewrite` change returns when the resource needs no write


class _NoSyncCollection(Exception):
    """The server refused an initial sync-collection REPORT: use the ETag listing instead."""


class CalDAVProvider:
    """One CalDAV account (server URL + username/password, HTTP Basic)."""

    name = "caldav"
    # no watch channels (polling only); a series and its overrides are one resource, always read
    # whole: an override missing from a re-read series is gone (another client reverted the instance)
    capabilities = Capabilities(push=False, lists_whole_series=True)

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        batch_size: int = BATCH_SIZE,
        page_events: int = PAGE_EVENTS,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        sync_collection: bool | None = None,
        read_ahead: bool = True,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"CalDAV URL must be http(s)://host[:port][/path], got {url!r}")
        self.origin = f"{parsed.scheme}://{parsed.netloc}"
        self.root = parsed.path or "/"
        headers = {"User-Agent": "calsync"}
        if username is not None:
            secret = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {secret}"
        self.http = RetryingClient(self.origin, headers, policy=retry, timeout=timeout, provider="caldav")
        self.batch_size = max(1, batch_size)
        self.page_events = max(1, page_events)
        # None: use sync-collection when the server takes it; False: always the ETag listing.
        self.sync_collection = sync_collection
        self.read_ahead = read_ahead  # fetch the next multiget batch while the current page is applied

    @classmethod
    def from_account(cls, account: Account, **options: Any) -> CalDAVProvider:
        if not account.base_url:
            raise ValueError("a CalDAV account needs the server URL (base_url)")
        credentials = account.credentials or {}
        return cls(account.base_url, credentials.get("username"), credentials.get("password"), **options)

    @property
    def request_count(self) -> int:
        return self.http.request_count

    def close(self) -> None:
        self.http.close()

    # --- discovery --------------------------------------------------------------------

    def list_calendars(self) -> list[RemoteCalendar]:
        """current-user-principal -> calendar-home-set -> the calendars in it (VEVENT ones)."""
        start = self._propfind(
            self.root,
            0,
            [(DAV, "current-user-principal"), (CALDAV, "calendar-home-set"), (DAV, "resourcetype")],
            follow=True,
        )
        homes: list[str] = []
        direct: list[str] = []
        for response in start:
            homes += _hrefs(response.props.get(_t(CALDAV, "calendar-home-set")))
            if _is_calendar(response):
                direct.append(self._path(response.href))
            for principal in _hrefs(response.props.get(_t(DAV, "current-user-principal"))):
                for found in self._propfind(principal, 0, [(CALDAV, "calendar-home-set")], follow=True):
                    homes += _hrefs(found.props.get(_t(CALDAV, "calendar-home-set")))
        if not homes and not direct:
            homes = [self.root]
        found_calendars: dict[str, RemoteCalendar] = {}
        props = [
            (DAV, "resourcetype"),
            (DAV, "displayname"),
            (CALDAV, "supported-calendar-component-set"),
            (APPLE, "calendar-color"),
            (CALDAV, "calendar-timezone"),
            (DAV, "current-user-privilege-set"),
        ]
        for home in dict.fromkeys(self._path(h) for h in [*homes, *direct]):
            for response in self._propfind(home, 1, props, follow=True):
                if not _is_calendar(response) or not _takes_events(response):
                    continue
                path = _collection_path(self._path(response.href))
                found_calendars.setdefault(
                    path,
                    RemoteCalendar(
                        remote_id=path,
                        name=_text(response.props.get(_t(DAV, "displayname"))) or path.rstrip("/").rsplit("/", 1)[-1],
                        time_zone=_tzid(_text(response.props.get(_t(CALDAV, "calendar-timezone")))),
                        color=_text(response.props.get(_t(APPLE, "calendar-color"))),
                        access_role=_access_role(response.props.get(_t(DAV, "current-user-privilege-set"))),
                    ),
                )
        calendars = list(found_calendars.values())
        if calendars:
            calendars[0].primary = True  # CalDAV has no "primary": the first one stands for it
        return calendars

    # --- reading ----------------------------------------------------------------------

    def list_changes(self, calendar_id: str, sync_token: str | None) -> Iterator[ChangePage]:
        collection = self._collection(calendar_id)
        if sync_token is None:
            if self.sync_collection is not False:
                try:
                    yield from self._sync_collection(collection, "")
                except _NoSyncCollection:
                    if self.sync_collection:
                        raise ProviderError("the server refused the sync-collection REPORT") from None
                else:
                    return
            yield from self._etag_listing(collection)
            return
        if sync_token.startswith(DAV_TOKEN):
            yield from self._sync_collection(collection, sync_token[len(DAV_TOKEN) :])
        elif sync_token.startswith(ETAGS_TOKEN):
            yield from self._etag_check(collection, sync_token)
        else:
            raise SyncTokenInvalid(f"not a CalDAV sync token: {sync_token[:40]!r}")

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        collection = self._collection(calendar_id)
        base, _ = ical.split_remote_id(remote_id)
        fetched = self._get(self._href(collection, base))
        if fetched is None:
            return None
        text, etag = fetched
        try:
            return _pick(ical.remote_events(base, etag, text), remote_id)
        except ical.InvalidCalendarData as exc:
            raise ProviderError(f"{remote_id}: {exc}", status=422) from exc

    def listing_window(self) -> tuple[datetime, datetime] | None:
        """None: sync-collection reports every resource of the collection, whatever its dates, so
        what a listing leaves out or reports deleted (404) is gone."""
        return None

    def fetch_events(self, calendar_id: str, remote_ids: Sequence[str]) -> dict[str, RemoteEvent | None]:
        """get_event per id (a multiget would do, but with a listing over the whole collection the
        engine rarely needs this). None only where the server answered 404/410 (or the resource no
        longer holds that instance, as get_event); any other failure raises."""
        return fetch_each(self.get_event, calendar_id, remote_ids)

    # --- writing ----------------------------------------------------------------------

    def insert_event(
        self, calendar_id: str, data: EventData, *, remote_id: str | None = None, series_remote_id: str | None = None
    ) -> RemoteEvent:
        """PUT a new `<remote id>.ics` with If-None-Match: * (412 -> AlreadyExists). An instance of
        a series (original_start set) is added to the resource that holds its series: the series'
        resource when `series_remote_id` names it, else the one found by UID."""
        collection = self._collection(calendar_id)
        if data.original_start:
            return self._insert_override(collection, data, series_remote_id)
        name = remote_id or _new_name()
        if "/" in name or "#" in name:
            raise ProviderError(f"unusable CalDAV resource name {name!r}", status=400)
        cal, comp = ical.new_resource(data, uid=name)
        ical.apply_event_data(comp, data, creating=True)
        text = ical.render(cal)
        href = self._href(collection, name)
        response = self._put(href, text, {"If-None-Match": "*"})
        if response.status_code == 412 and not _mentions(response, "no-uid-conflict"):
            raise AlreadyExists(f"{href} already exists", status=412)
        self._check_write(response, href)
        return self._written(collection, href, name, text, response, name)

    def update_event(self, calendar_id: str, remote_id: str, data: EventData, *, if_match: str | None) -> RemoteEvent:
        collection = self._collection(calendar_id)
        base, key = ical.split_remote_id(remote_id)
        href = self._href(collection, base)
        if key is None and not ical.is_component_etag(if_match):
            # The resource holds this one event (the ETag is the resource's): patch our copy of it.
            cal, comp = self._copy_to_patch(data, base)
            ical.apply_event_data(comp, data)
            text = ical.render(cal)
            response = self._put(href, text, {"If-Match": if_match} if if_match else {})
            if response.status_code in (403, 409, 412) and _mentions(response, "no-uid-conflict"):
                # the resource holds another UID than the event now names (the event took another
                # side's edit, and our copy of the resource was stale or missing): a resource keeps
                # its UID, so the change is patched into the server's copy, under the same If-Match
                return self._patch_servers_copy(collection, href, base, remote_id, data, if_match)
            self._check_write(response, href)
            return self._written(collection, href, base, text, response, remote_id)

        def patch(cal: Any) -> Any:
            comp = ical.find_vevent(cal, key)
            if comp is None:
                raise NotFoundError(f"{remote_id} is not in {href} any more", status=404)
            ical.apply_event_data(comp, data)
            if key is None:  # an instance the master now excludes keeps no override
                ical.drop_excluded_overrides(cal, comp)
            elif data.status != "cancelled" and (master := ical.find_vevent(cal, None)) is not None:
                ical.include_instance(master, key)  # a live override: the instance exists
            return cal

        written, response = self._rewrite(href, remote_id, if_match, patch)
        assert written is not None
        return self._written(collection, href, base, written, response, remote_id)

    def withdraw_create(self, calendar_id: str, data: EventData, *, remote_id: str) -> None:
        """The id is ours: delete whatever the lost create left at it (deleting is idempotent)."""
        self.delete_event(calendar_id, remote_id, if_match=None)

    def _patch_servers_copy(
        self, collection: str, href: str, base: str, remote_id: str, data: EventData, if_match: str | None
    ) -> RemoteEvent:
        """`data` written into the resource as the server holds it (its master, or its one VEVENT),
        keeping the resource's UID."""

        def patch(cal: Any) -> Any:
            comp = ical.find_vevent(cal, None) or next(iter(ical.vevents(cal)), None)
            if comp is None:
                raise NotFoundError(f"{href} holds no event", status=404)
            ical.apply_event_data(comp, data)
            ical.drop_excluded_overrides(cal, comp)
            return cal

        written, response = self._rewrite(href, remote_id, if_match, patch)
        assert written is not None
        return self._written(collection, href, base, written, response, remote_id)

    def delete_event(self, calendar_id: str, remote_id: str, *, if_match: str | None) -> None:
        """DELETE with If-Match (404: already gone). Deleting an override removes that VEVENT and
        excludes the instance from the series (EXDATE), rewriting the resource."""
        collection = self._collection(calendar_id)
        base, key = ical.split_remote_id(remote_id)
        href = self._href(collection, base)
        if key is None and not ical.is_component_etag(if_match):
            self._delete(href, if_match)
            return

        def drop(cal: Any) -> Any:
            comp = ical.find_vevent(cal, key)
            if key is None:
                return None  # the series goes, with its overrides
            master = ical.find_vevent(cal, None)
            if comp is not None:
                cal.subcomponents.remove(comp)
            if master is not None:
                ical.add_exdate(master, key, comp)
            return cal if ical.vevents(cal) else None

        try:
            self._rewrite(href, remote_id, if_match, drop)
        except NotFoundError:
            return

    def cancel_occurrence(
        self,
        calendar_id: str,
        series_remote_id: str,
        original_start: str,
        *,
        remote_id: str | None = None,
        if_match: str | None = None,
    ) -> RemoteEvent | None:
        """An EXDATE on the series' master and the instance's override (if any) removed, in one
        rewrite of the series' resource (If-Match on it; `if_match` is checked against the override
        calsync holds). Nothing is written when the instance is already excluded and has no override;
        a resource that is gone is gone with its instances."""
        collection = self._collection(calendar_id)
        base, _ = ical.split_remote_id(series_remote_id)
        href = self._href(collection, base)
        held = ical.split_remote_id(remote_id)[1] if remote_id else None  # the override calsync holds

        def exclude(cal: Any) -> Any:
            dropped = ical.find_vevent(cal, held) if held else None
            if dropped is not None:
                cal.subcomponents.remove(dropped)
            if not ical.exclude_instance(cal, original_start) and dropped is None:
                return _UNCHANGED
            return cal if ical.vevents(cal) else None

        with contextlib.suppress(NotFoundError):
            self._rewrite(href, remote_id or base, if_match, exclude)
        return None

    # --- push notifications: none in CalDAV ------------------------------------------------

    def watch(
        self,
        calendar_id: str,
        channel_id: str,
        address: str,
        token: str,
        ttl_seconds: int | None = None,
    ) -> Channel:
        raise ProviderError("CalDAV has no push notifications")

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        raise ProviderError("CalDAV has no push notifications")

    # --- sync-collection (RFC 6578) --------------------------------------------------------

    def _sync_collection(self, collection: str, token: str) -> Iterator[ChangePage]:
        """REPORT sync-collection from `token` ("" = everything), then multiget what changed. A 507
        on the request-URI (truncated answer) is continued from the token that came with it. One page
        is held back, so the last one can carry the new token."""
        full = token == ""
        current = token
        pending: list[RemoteChange] | None = None
        while True:
            body = (
                f'<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:">'
                f"<d:sync-token>{escape(current)}</d:sync-token><d:sync-level>1</d:sync-level>"
                f"<d:prop><d:getetag/></d:prop></d:sync-collection>"
            )
            response = self.http.request("REPORT", collection, content=body, headers={**XML_HEADERS, "Depth": "0"})
            status = response.status_code
            if 400 <= status < 500 and status not in (401, 429):
                if current:
                    marker = ", DAV:valid-sync-token" if _mentions(response, "valid-sync-token") else ""
                    raise SyncTokenInvalid(
                        f"sync token refused ({status}{marker})", status=status, reason="valid-sync-token"
                    )
                raise _NoSyncCollection
            if status == 501 and not current:
                raise _NoSyncCollection
            _check(response, f"REPORT sync-collection {collection}")
            responses, new_token = _multistatus(response.content)
            if new_token is None:
                raise ProviderError(f"sync-collection answer for {collection} has no sync-token")
            changed: list[str] = []
            removed: list[str] = []
            truncated = False
            for item in responses:
                path = self._path(item.href)
                if _collection_path(path) == collection:
                    truncated = truncated or item.status == 507
                    continue
                if path.endswith("/"):
                    continue  # a child collection, not an event
                if item.status in (404, 410) or (item.status is None and not item.props and item.missing):
                    removed.append(path)  # (older Xandikos: a 404 propstat instead of a 404 status)
                elif item.status is None or 200 <= item.status < 300:
                    changed.append(path)
            for items in self._pages(collection, removed, changed):
                if pending is not None:
                    yield ChangePage(items=pending, full=full, last=False)
                pending = items
            current = new_token
            if not truncated:
                break
        yield ChangePage(items=pending or [], full=full, last=True, sync_token=DAV_TOKEN + current)

    def _pages(self, collection: str, removed: list[str], changed: list[str]) -> Iterator[list[RemoteChange]]:
        """Bounded pages of about `page_events` changes: deletions, then the changed members, fetched
        `batch_size` at a time. A few deletions share a page with what changed (one store
        transaction for a small sync, not two)."""
        page: list[RemoteChange] = []
        for chunk in _chunks(removed, self.page_events):
            if page:
                yield page
            page = [RemoteDeletion(self._remote_id(collection, p)) for p in chunk]
        if len(page) >= self.page_events:
            yield page
            page = []
        for items in self._fetched(collection, changed):
            page.extend(items)
            if len(page) >= self.page_events:
                yield page
                page = []
        if page:
            yield page

    def _fetched(self, collection: str, changed: list[str]) -> Iterator[list[RemoteChange]]:
        """The changed members, one multiget batch at a time.

        With several batches, a helper thread keeps the server busy: it fetches the next two multiget
        answers (raw bytes) while this thread parses and the engine stores, so the server renders
        batch k+1 and k+2 while we work on batch k. The requests are the same ones, in the same order."""
        chunks = list(_chunks(changed, self.batch_size))
        if len(chunks) <= 1 or not self.read_ahead:
            for chunk in chunks:
                yield self._multiget(collection, chunk)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="caldav-read-ahead") as pool:
            ahead = deque(pool.submit(self._multiget_request, collection, chunk) for chunk in chunks[:READ_AHEAD])
            for index, chunk in enumerate(chunks):
                response = ahead.popleft().result()
                if index + READ_AHEAD < len(chunks):
                    ahead.append(pool.submit(self._multiget_request, collection, chunks[index + READ_AHEAD]))
                answer = self._multiget_answer(collection, chunk, response)
                del response  # the raw answer is not kept while the engine stores this batch
                yield answer

    # --- ETag listing fallback (no sync-collection) -------------------------------------------

    def _members(self, collection: str) -> tuple[list[tuple[str, str]], str | None]:
        """(path, ETag) of the collection's calendar object resources, sorted, and the collection's
        getctag (None when the server has none): one Depth-1 PROPFIND."""
        responses = self._propfind(
            collection, 1, [(DAV, "getetag"), (DAV, "resourcetype"), (DAV, "getcontenttype"), (CS, "getctag")]
        )
        members: list[tuple[str, str]] = []
        ctag: str | None = None
        for item in responses:
            path = self._path(item.href)
            if _collection_path(path) == collection or path == collection:
                ctag = _text(item.props.get(_t(CS, "getctag"))) or ctag
                continue
            if path.endswith("/"):
                continue
            kind = _text(item.props.get(_t(DAV, "getcontenttype"))) or ""
            if kind and "calendar" not in kind.lower():
                continue
            members.append((path, _text(item.props.get(_t(DAV, "getetag"))) or ""))
        return sorted(members), ctag

    @staticmethod
    def _digest(members: list[tuple[str, str]], ctag: str | None) -> str:
        """The fallback token: a digest of the ETag listing, and the getctag that came with it."""
        lines = "\n".join(f"{path}\t{etag}" for path, etag in members)
        digest = ETAGS_TOKEN + hashlib.sha256(lines.encode()).hexdigest()
        return f"{digest}{CTAG_SEPARATOR}{ctag}" if ctag else digest

    def _etag_listing(self, collection: str) -> Iterator[ChangePage]:
        members, ctag = self._members(collection)
        token = self._digest(members, ctag)
        pending: list[RemoteChange] | None = None
        for items in self._pages(collection, [], [path for path, _ in members]):
            if pending is not None:
                yield ChangePage(items=pending, full=True, last=False)
            pending = items
        yield ChangePage(items=pending or [], full=True, last=True, sync_token=token)

    def _etag_check(self, collection: str, token: str) -> Iterator[ChangePage]:
        """Without sync-collection: an unchanged getctag (one Depth-0 PROPFIND) means nothing changed;
        otherwise the ETag listing decides, and any change means a full listing (reconciled)."""
        digest, _, ctag = token.partition(CTAG_SEPARATOR)
        if ctag:
            found = self._propfind(collection, 0, [(CS, "getctag")])
            if any(_text(r.props.get(_t(CS, "getctag"))) == ctag for r in found):
                yield ChangePage(items=[], full=False, last=True, sync_token=token)
                return
        members, current_ctag = self._members(collection)
        current = self._digest(members, current_ctag)
        if current.partition(CTAG_SEPARATOR)[0] != digest:
            raise SyncTokenInvalid(
                "the collection changed (no sync-collection: a full listing follows)", reason="etag-listing"
            )
        yield ChangePage(items=[], full=False, last=True, sync_token=current)

    # --- fetching ------------------------------------------------------------------------

    def _multiget(self, collection: str, paths: list[str]) -> list[RemoteChange]:
        """calendar-multiget of `paths`: RemoteEvents, and RemoteDeletions for members gone meanwhile."""
        return self._multiget_answer(collection, paths, self._multiget_request(collection, paths))

    def _multiget_request(self, collection: str, paths: list[str]) -> httpx.Response:
        hrefs = "".join(f"<d:href>{escape(p)}</d:href>" for p in paths)
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><c:calendar-multiget xmlns:d="DAV:" xmlns:c="{CALDAV}">'
            f"<d:prop><d:getetag/><c:calendar-data/></d:prop>{hrefs}</c:calendar-multiget>"
        )
        return self.http.request("REPORT", collection, content=body, headers={**XML_HEADERS, "Depth": "1"})

    def _multiget_answer(self, collection: str, paths: list[str], response: httpx.Response) -> list[RemoteChange]:
        _check(response, f"REPORT calendar-multiget {collection}")
        responses, _ = _multistatus(response.content)
        answered: dict[str, _Response] = {self._path(r.href): r for r in responses}
        out: list[RemoteChange] = []
        for path in paths:
            base = self._remote_id(collection, path)
            item = answered.get(path)
            if item is None:  # left out of the answer: fetch it alone
                fetched = self._get(path)
                if fetched is None:
                    out.append(RemoteDeletion(base))
                else:
                    out.extend(_events(base, fetched[1], fetched[0]))
                continue
            data = _text(item.props.get(_t(CALDAV, "calendar-data")))
            if item.status in (404, 410) or (data is None and item.missing.get(_t(CALDAV, "calendar-data")) == 404):
                out.append(RemoteDeletion(base))
                continue
            if data is None:
                raise ProviderError(f"multiget gave no calendar-data for {path}", status=item.status)
            etag = _text(item.props.get(_t(DAV, "getetag"))) or ""
            out.extend(_events(base, etag, data))
        return out

    def _get(self, href: str) -> tuple[str, str] | None:
        """(text, ETag) of one resource, or None when it does not exist."""
        response = self.http.request("GET", href, headers={"Accept": "text/calendar"})
        if response.status_code in (404, 410):
            return None
        _check(response, f"GET {href}")
        etag = response.headers.get("ETag") or ""
        if not etag or etag.startswith("W/"):
            found = self._propfind(href, 0, [(DAV, "getetag")])
            etag = next((_text(r.props.get(_t(DAV, "getetag"))) or "" for r in found), "")
        return response.text, etag

    def _propfind(
        self,
        path: str,
        depth: int,
        props: list[tuple[str, str]],
        *,
        follow: bool = False,
    ) -> list[_Response]:
        names = "".join(f'<x:{name} xmlns:x="{ns}"/>' for ns, name in props)
        body = f'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>{names}</d:prop></d:propfind>'
        response = self.http.request(
            "PROPFIND", path, content=body, follow_redirects=follow, headers={**XML_HEADERS, "Depth": str(depth)}
        )
        if response.status_code in (404, 410):
            raise NotFoundError(f"PROPFIND {path}: not found", status=response.status_code)
        _check(response, f"PROPFIND {path}")
        if response.status_code != 207 and "xml" not in response.headers.get("content-type", ""):
            # a web server that ignores the method (a page, a redirect's target): no DAV here at all
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise ProviderError(
                f"PROPFIND {path}: answered {response.status_code} with {kind}, not a DAV multistatus",
                status=response.status_code,
                reason="not-dav",
            )
        return _multistatus(response.content)[0]

    # --- writing helpers ---------------------------------------------------------------------

    def _put(self, href: str, text: str, headers: dict[str, str]) -> httpx.Response:
        return self.http.request("PUT", href, content=text.encode(), headers={"Content-Type": ICS_TYPE, **headers})

    def _check_write(self, response: httpx.Response, href: str) -> None:
        refused = (
            f"PUT {href}: the server refused its UID (no-uid-conflict: another resource holds that UID, "
            "or this resource holds another one)"
        )
        if response.status_code == 412:
            if _mentions(response, "no-uid-conflict"):
                raise ProviderError(refused, status=409, reason="no-uid-conflict")
            raise PreconditionFailed(f"PUT {href}: the resource changed (412)", status=412)
        if response.status_code in (403, 409) and _mentions(response, "no-uid-conflict"):
            raise ProviderError(refused, status=409, reason="no-uid-conflict")
        _check(response, f"PUT {href}")

    def _written(
        self, collection: str, href: str, base: str, sent: str, response: httpx.Response, remote_id: str
    ) -> RemoteEvent:
        """The event as stored after our PUT. An ETag in the answer means the server stored what we
        sent (RFC 4791 5.3.4); without one (the server changed the data) the object is read again."""
        etag = response.headers.get("ETag")
        if etag and not etag.startswith("W/"):
            found = _pick(ical.remote_events(base, etag, sent), remote_id)
            if found is not None:
                return found
        fetched = self._get(href)
        if fetched is None:
            raise ProviderError(f"{href} is gone right after it was written")
        found = _pick(ical.remote_events(base, fetched[1], fetched[0]), remote_id)
        if found is None:
            raise ProviderError(f"{href} does not hold {remote_id} after it was written")
        return found

    def _copy_to_patch(self, data: EventData, base: str) -> tuple[Any, Any]:
        """The copy of the resource kept with the event (the remote text as last read), to patch."""
        return ical.new_resource(data, uid=base)

    def _rewrite(
        self, href: str, remote_id: str, if_match: str | None, change: Callable[[Any], Any]
    ) -> tuple[str | None, httpx.Response]:
        """Read the resource, check `if_match` against the component (or resource) ETag, apply
        `change`, and write it back with If-Match on the resource's ETag (DELETE when nothing is left,
        no write at all when `change` answers _UNCHANGED).

        The resource's own ETag only makes the read-modify-write atomic: when the server answers 412
        to it (another part of the resource changed meanwhile, or a retried write of ours already
        landed), the resource is read again and the check and change made over the new copy, a few
        times; a change to the component `if_match` guards is still a PreconditionFailed."""
        for _ in range(REWRITE_ATTEMPTS - 1):
            try:
                return self._rewrite_once(href, remote_id, if_match, change)
            except _ResourceChanged:
                continue
        try:
            return self._rewrite_once(href, remote_id, if_match, change)
        except _ResourceChanged as exc:
            raise PreconditionFailed(f"{href}: the resource kept changing under our writes (412)", status=412) from exc

    def _rewrite_once(
        self, href: str, remote_id: str, if_match: str | None, change: Callable[[Any], Any]
    ) -> tuple[str | None, httpx.Response]:
        fetched = self._get(href)
        if fetched is None:
            raise NotFoundError(f"{href} does not exist", status=404)
        text, resource_etag = fetched
        cal = ical.parse_calendar(text)
        _, key = ical.split_remote_id(remote_id)
        comp = ical.find_vevent(cal, key)
        if if_match is not None:
            current = (
                (ical.component_etag(comp) if comp is not None else None)
                if ical.is_component_etag(if_match)
                else resource_etag
            )
            if current != if_match:
                raise PreconditionFailed(f"{remote_id} changed on the server", status=412)
        result = change(cal)
        if result is _UNCHANGED:
            return text, httpx.Response(204)
        if result is None:
            try:
                self._delete(href, resource_etag or None)
            except PreconditionFailed as exc:
                raise _ResourceChanged from exc
            return None, httpx.Response(204)
        new_text = ical.render(result)
        response = self._put(href, new_text, {"If-Match": resource_etag} if resource_etag else {})
        if response.status_code == 412 and resource_etag and not _mentions(response, "no-uid-conflict"):
            raise _ResourceChanged
        self._check_write(response, href)
        return new_text, response

    def _delete(self, href: str, if_match: str | None) -> None:
        response = self.http.request("DELETE", href, headers={"If-Match": if_match} if if_match else {})
        if response.status_code in (404, 410):
            return  # already gone: deleting is idempotent
        if response.status_code == 412:
            raise PreconditionFailed(f"DELETE {href}: the resource changed (412)", status=412)
        _check(response, f"DELETE {href}")

    def _insert_override(self, collection: str, data: EventData, series_remote_id: str | None = None) -> RemoteEvent:
        """An overridden instance whose series lives in this calendar: add it to that resource (the
        series' own, or the one holding its UID), under the series' UID (a mirrored instance may come
        with another service's UID for it)."""
        if series_remote_id:
            path: str | None = self._href(collection, ical.split_remote_id(series_remote_id)[0])
        else:
            path = self._find_by_uid(collection, data.ical_uid) if data.ical_uid else None
        if path is None:
            raise ProviderError(
                f"cannot create an instance of a series that is not in {collection} (UID {data.ical_uid!r})",
                status=409,
                reason="series-not-found",
            )
        base = self._remote_id(collection, path)
        keys: list[str | None] = []

        def add(cal: Any) -> Any:
            master = ical.find_vevent(cal, None)
            uid = master.get("UID") if master is not None else None
            probe = ical.new_vevent(str(uid) if uid is not None else data.ical_uid or base)
            ical.set_recurrence_id(probe, data.original_start or "", master)
            keys.append(ical.recurrence_key(probe))
            comp = ical.find_vevent(cal, keys[0])
            creating = comp is None
            if comp is None:
                comp = probe
                cal.add_component(comp)
            ical.apply_event_data(comp, data, creating=creating)
            if master is not None and data.status != "cancelled":
                ical.include_instance(master, keys[0] or "")  # a live override: the instance exists
            return cal

        text, response = self._rewrite(path, base, None, add)
        assert text is not None
        return self._written(collection, path, base, text, response, f"{base}#{keys[0]}")

    def _find_by_uid(self, collection: str, uid: str) -> str | None:
        """The path of the resource holding UID `uid` (calendar-query, RFC 4791 7.8)."""
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><c:calendar-query xmlns:d="DAV:" xmlns:c="{CALDAV}">'
            f'<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
            f'<c:prop-filter name="UID"><c:text-match collation="i;octet">{escape(uid)}</c:text-match>'
            f"</c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
        )
        response = self.http.request("REPORT", collection, content=body, headers={**XML_HEADERS, "Depth": "1"})
        _check(response, f"REPORT calendar-query {collection}")
        for item in _multistatus(response.content)[0]:
            path = self._path(item.href)
            if not path.endswith("/") and (item.status is None or item.status < 300):
                return path
        return None

    # --- hrefs and ids ---------------------------------------------------------------------

    def _path(self, href: str) -> str:
        """An href as a normalised absolute path (servers may answer with full URLs or other escaping)."""
        href = href.strip()
        if _PLAIN_PATH.match(href):  # the common answer, and one `_path` per member of a listing
            return href
        path = urlparse(urljoin(self.origin + "/", href.strip())).path or "/"
        return quote(unquote(path), safe=SAFE_PATH)

    def _collection(self, calendar_id: str) -> str:
        return _collection_path(self._path(calendar_id))

    def _remote_id(self, collection: str, path: str) -> str:
        rest = path[len(collection) :] if path.startswith(collection) else ""
        if rest.endswith(".ics") and len(rest) > 4 and "/" not in rest and "#" not in rest:
            return rest[:-4]
        return path

    def _href(self, collection: str, base: str) -> str:
        if base.startswith("/"):
            return base
        return collection + quote(unquote(base), safe=SAFE_PATH) + ".ics"


# --- helpers --------------------------------------------------------------------------------


REWRITE_ATTEMPTS = 3  # reads and writes of one resource when its ETag changes under us


class _ResourceChanged(Exception):
    """The server refused our write of a whole resource on its ETag (412): read it again."""


def _new_name() -> str:
    import uuid

    return uuid.uuid4().hex


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _collection_path(path: str) -> str:
    return path if path.endswith("/") else path + "/"


def _events(base: str, etag: str, text: str) -> list[RemoteChange]:
    """The events of one resource; an unreadable one is skipped (and logged) rather than failing
    every sync of the calendar from now on."""
    try:
        return list(ical.remote_events(base, etag, text))
    except ical.InvalidCalendarData as exc:
        log.warning("skipping unreadable calendar object %s: %s", base, exc)
        return []


def _pick(events: list[RemoteEvent], remote_id: str) -> RemoteEvent | None:
    return next((e for e in events if e.remote_id == remote_id), None)


def _mentions(response: httpx.Response, element: str) -> bool:
    return element in response.text


def _check(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status < 300:
        return
    raise provider_error(response, f"CalDAV {what}: {status} {response.reason_phrase}".strip())
