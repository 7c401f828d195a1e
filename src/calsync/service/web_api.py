"""What the web page needs beyond the REST API of api.py: conferences on events, and the demo control.

`GET /api/v1/conference-providers`, `POST` / `DELETE /api/v1/events/{id}/conference`, and, only when
the service runs as `calsync demo`, `GET /api/v1/demo` and `POST /api/v1/demo/remote-change`.
`mount_web` serves the page itself (`/` and `/static/...`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import httpx
from fastapi import APIRouter, FastAPI, Header, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine

from calsync.conferencing.base import ConferenceAdapter, ConferenceError
from calsync.engine import local
from calsync.engine.conferences import ConferenceEngine, ConferenceWorkError
from calsync.engine.pool import ProviderPool
from calsync.providers.base import ProviderError
from calsync.service.api import (
    PREFIX,
    EventOut,
    SafeValidationRoute,
    StaleProblemOut,
    etag_of,
    event_bodies,
    if_match_versions,
    live_row,
)
from calsync.service.auth import CallerDep
from calsync.service.authors import AuthorDep
from calsync.service.errors import API_ERRORS, ProblemOut
from calsync.service.login import page_allowed
from calsync.store.common import NotFound

WEB_DIR = Path(__file__).parent / "web"

DemoKind = Literal["create", "rename", "move", "conflict"]


class DemoControl(Protocol):
    """What `calsync demo` hands the router: a way to change the emulated remote side."""

    def describe(self) -> dict[str, Any]: ...

    def remote_change(self, kind: str, start: str | None = None) -> dict[str, Any]: ...


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ConferenceRequest(_Strict):
    provider: Annotated[str, Field(max_length=64, examples=["zoom"])]


class RemoteChangeRequest(_Strict):
    kind: DemoKind = "move"
    start: Annotated[
        str | None,
        Field(max_length=64, description="where a created event goes (RFC 3339); default: the next full hour"),
    ] = None


EventId = Annotated[str, PathParam(max_length=64)]


def _body(conn: Connection, event_id: str, response: Response, user_id: str) -> dict[str, Any]:
    (body,) = event_bodies(conn, [live_row(conn, event_id, user_id)])
    response.headers["ETag"] = body["etag"]
    return body


def _check_if_match(if_match: str | None, event_id: str, current: int) -> None:
    """If-Match is optional here (a conference change is not a content edit), but honoured when sent."""
    if not if_match or not if_match.strip():
        return
    wanted = if_match_versions(if_match, event_id)
    if wanted is not None and current not in wanted:
        raise _changed(event_id, current)


def _changed(event_id: str, current: int) -> HTTPException:
    """412: the event is at another version than the caller's."""
    tag = etag_of(event_id, current)
    return HTTPException(
        412,
        headers={"ETag": tag},
        detail={
            "msg": f"the event has changed: it is at version {current}; re-read it and retry",
            "etag": tag,
            "version": current,
        },
    )


def web_router(
    engine: Engine, adapters: dict[str, ConferenceAdapter] | None = None, demo: DemoControl | None = None
) -> APIRouter:
    adapters = adapters if adapters is not None else {}
    router = APIRouter(prefix=PREFIX, route_class=SafeValidationRoute, responses=API_ERRORS)

    @router.get("/conference-providers")
    def conference_providers() -> dict[str, Any]:
        """The conference systems configured here (what `POST /events/{id}/conference` accepts)."""
        return {
            "providers": [
                {"name": name, "label": getattr(a, "solution_name", name) or name} for name, a in adapters.items()
            ]
        }

    @router.post(
        "/events/{event_id}/conference",
        status_code=201,
        response_model=EventOut,
        responses={
            404: {"model": ProblemOut, "description": "No such event"},
            409: {"model": ProblemOut, "description": "The event has a conference already, or it could not be made"},
            502: {"model": ProblemOut, "description": "The conference system or the calendar provider failed"},
        },
    )
    def add_conference(
        event_id: EventId, body: ConferenceRequest, response: Response, caller: CallerDep
    ) -> dict[str, Any]:
        """Create a meeting for the event and put it on its calendar events (409 if it has a conference)."""
        if body.provider not in adapters:
            configured = ", ".join(adapters) or "none"
            raise HTTPException(
                422,
                detail=[
                    {
                        "loc": ["body", "provider"],
                        "type": "value_error",
                        "msg": f"unknown conference provider (configured: {configured})",
                    }
                ],
            )
        with engine.begin() as conn:
            row = live_row(conn, event_id, caller.user_id)
        if row["conference"]:
            shown = row["conference"].get("name") or row["conference"].get("provider") or "a conference"
            raise HTTPException(409, detail=f"the event already has a conference ({shown}); remove it first")
        pool = ProviderPool(engine)
        try:
            ConferenceEngine(engine, adapters, pool).create(event_id, body.provider)
        except ConferenceWorkError as exc:
            raise HTTPException(409, detail=str(exc)) from exc
        except NotFound as exc:
            raise HTTPException(404, detail=f"no event with id {event_id!r}") from exc
        except (ConferenceError, ProviderError, httpx.HTTPError) as exc:
            raise HTTPException(502, detail=f"could not create the conference: {exc}") from exc
        finally:
            pool.close()
        local.queue_unagreed(engine, event_id)
        with engine.begin() as conn:
            return _body(conn, event_id, response, caller.user_id)

    @router.delete(
        "/events/{event_id}/conference",
        response_model=EventOut,
        responses={
            404: {"model": ProblemOut, "description": "No such event"},
            409: {"model": ProblemOut, "description": "The event has no conference"},
            412: {"model": StaleProblemOut, "description": "If-Match (optional here) names an older version"},
        },
    )
    def remove_conference(
        event_id: EventId,
        response: Response,
        caller: CallerDep,
        author: AuthorDep,
        if_match: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Take the conference off the event: a local change pushed to every binding; a meeting calsync
        made is deleted by the conference worker."""
        with engine.begin() as conn:
            version = int(live_row(conn, event_id, caller.user_id)["version"])
        _check_if_match(if_match, event_id, version)
        try:  # the version checked is the one changed: an edit in between is a 412 too
            local.remove_conference(engine, event_id, version, author=author)
        except local.NoConference as exc:
            raise HTTPException(409, detail=str(exc)) from exc
        except local.StaleVersion as exc:
            raise _changed(event_id, exc.current) from exc
        with engine.begin() as conn:
            return _body(conn, event_id, response, caller.user_id)

    if demo is not None:

        @router.get("/demo")
        def demo_info() -> dict[str, Any]:
            """Only in `calsync demo`: the emulators behind this service."""
            return demo.describe()

        @router.post("/demo/remote-change", responses={409: {"model": ProblemOut, "description": "Nothing to change"}})
        def demo_remote_change(body: RemoteChangeRequest) -> dict[str, Any]:
            """Only in `calsync demo`: change the emulated Google calendar as another client would."""
            try:
                return demo.remote_change(body.kind, body.start)
            except LookupError as exc:
                raise HTTPException(409, detail=str(exc)) from exc
            except ValueError as exc:
                raise HTTPException(
                    422,
                    detail=[
                        {"loc": ["body", "start"], "type": "value_error", "msg": f"not an RFC 3339 date-time: {exc}"}
                    ],
                ) from exc

    return router


def mount_web(app: FastAPI) -> None:
    """The page at `/`, its files at `/static/...`."""
    index = WEB_DIR / "index.html"

    @app.get("/", include_in_schema=False, response_model=None)
    def page(request: Request) -> FileResponse | RedirectResponse:
        if not page_allowed(request):  # no login yet: the login page
            return RedirectResponse("/login", status_code=303)
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
