"""An event's history and restoring one of its versions (engine/history.py):

`GET /api/v1/events/{id}/history`: the kept entries, newest first, a page at a time (`cursor`, `limit`);
also for a deleted event (who deleted it is history too). `POST /api/v1/events/{id}/restore
{"version": V}`: the content of version V as the event's next version, pushed to every binding like a
local edit (a deleted event comes back); If-Match as for PATCH (required; `*` for any version). Both
only for the event's owner: another user's event is a 404 like one that does not exist."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from calsync.engine import history, local
from calsync.service.api import (
    _GUARDED,
    PREFIX,
    EventId,
    EventOut,
    IfMatch,
    SafeValidationRoute,
    _agreed_version,
    _event_response,
    _not_found,
    _stale,
    is_row_id,
)
from calsync.service.auth import CallerDep
from calsync.service.authors import AuthorDep
from calsync.service.errors import API_ERRORS, ProblemOut
from calsync.store import events as event_store
from calsync.store import users
from calsync.store.common import NotFound

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"version": 1}]})

    version: Annotated[int, Field(ge=1, le=2**31 - 1, description="the version whose content to restore")]


class ChangeOut(BaseModel):
    from_: Any = Field(alias="from")
    to: Any


class HistoryEntryOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int = Field(description="the journal row's id (the order of entries)")
    event_id: str
    version: int = Field(description="the event's version after this change")
    kind: str = Field(
        description="created | updated | deleted | undeleted | conference-changed | conflict-opened | conflict-resolved"
    )
    side: str = Field(description='"local", or the id of the binding that brought the change')
    author: str = Field(description='who: "api key <name>", "web user <name>", "cli", "google binding <id>", ...')
    at: str | None = Field(description="when calsync committed the change (UTC)")
    remote_etag: str | None = Field(description="the provider's ETag of the copy a binding brought")
    fields: list[str] = Field(description="the fields that changed (a conflict's entries: its kind, its resolution)")
    changes: dict[str, ChangeOut] = Field(description="each changed field's old and new value")
    conflict_id: str | None
    restored_from: int | None = Field(description="the version this change restored, when it was a restore")


class HistoryOut(BaseModel):
    event_id: str
    entries: list[HistoryEntryOut] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass back as `cursor` for older entries; null on the last page")


def _owned(engine: Engine, event_id: str, user_id: str) -> None:
    """404 unless the event (live or deleted) is the user's."""
    if not is_row_id(event_id):
        raise _not_found("event", event_id)
    with engine.begin() as conn:
        if users.event_owner(conn, event_id) != user_id:
            raise _not_found("event", event_id)


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise HTTPException(
            422,
            detail=[{"loc": ["query", "cursor"], "msg": "is not a cursor this API gave out", "type": "value_error"}],
        )
    return int(value)


def history_router(engine: Engine) -> APIRouter:
    router = APIRouter(prefix=PREFIX, route_class=SafeValidationRoute, responses=API_ERRORS)

    @router.get(
        "/events/{event_id}/history",
        response_model=HistoryOut,
        response_model_by_alias=True,
        responses={404: {"model": ProblemOut, "description": "No such event"}},
    )
    def event_history(
        event_id: EventId,
        caller: CallerDep,
        cursor: Annotated[str | None, Query(max_length=32)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """Every kept change of the event, newest first: its version, who made it (`side`: local or
        the binding; `author`), when, the copy's ETag, and each changed field's old and new value.
        History keeps what the change journal keeps (its retention)."""
        _owned(engine, event_id, caller.user_id)
        try:
            found = history.page(engine, event_id, before=_cursor(cursor), limit=limit)
        except NotFound as exc:
            raise _not_found("event", event_id) from exc
        next_cursor = str(found.next_cursor) if found.next_cursor is not None else None
        return {"event_id": event_id, "entries": found.entries, "next_cursor": next_cursor}

    @router.post(
        "/events/{event_id}/restore",
        response_model=EventOut,
        responses={
            **_GUARDED,
            404: {"model": ProblemOut, "description": "No such event, or the version is not in its kept history"},
            409: {
                "model": ProblemOut,
                "description": "The event is a deleted recurring series or occurrence: it is not restored",
            },
        },
    )
    def restore_version(
        event_id: EventId,
        body: RestoreRequest,
        response: Response,
        caller: CallerDep,
        author: AuthorDep,
        if_match: IfMatch = None,
    ) -> dict[str, Any]:
        """Make the event's next version equal to version `version` (title, times, description,
        location, status, attendees, recurrence; the conference stays), pushed to every binding like
        any local edit. If-Match as for PATCH. Restoring the current content writes nothing and
        answers the event as it is. A deleted event comes back (without its conference), made again
        on every binding; a deleted series or occurrence is refused (409)."""
        _owned(engine, event_id, caller.user_id)
        with engine.begin() as conn:
            (row,) = event_store.get_events(conn, [event_id])
        wanted = _agreed_version(if_match, event_id, int(row["version"]))  # 428 / 412
        try:
            history.restore(engine, event_id, body.version, author=author, if_version=wanted)
        except local.StaleVersion as exc:
            raise _stale(event_id, exc.current) from exc
        except history.RestoreRefused as exc:
            raise HTTPException(409, detail=str(exc)) from exc
        except history.VersionNotKept as exc:
            raise HTTPException(404, detail=str(exc)) from exc
        except NotFound as exc:
            raise _not_found("event", event_id) from exc
        return _event_response(engine, event_id, response, caller.user_id)

    return router
