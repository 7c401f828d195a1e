"""`POST /api/v1/accounts/{account_id}/bindings`: bind many remote calendars of an account at once.

An organisation connecting thousands of calendars binds them in one request and one transaction
(engine/setup.bind_calendars), not one process start or request per calendar. The account's calendars
are listed at its provider while the request waits (502 when it fails); each one chosen gets a new
local calendar named after it, with the direction and policy given. A route of api_router, under the
same authentication (service/auth.py): the caller's own accounts only (another user's is the same 404
as a missing one), write scope.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Engine

from calsync.credentials import provider_maker
from calsync.engine import setup
from calsync.providers.base import ProviderError
from calsync.service.auth import CallerDep
from calsync.service.errors import ProblemOut
from calsync.statuses import ConflictPolicy, Direction
from calsync.store import accounts as account_store
from calsync.store import users

# a list names at most this many (each id at most 512 characters), so the largest valid body stays under
# the body cap (CALSYNC_MAX_BODY_BYTES, 1 MiB by default); `all` binds any number in one request
MAX_CALENDARS = 1_000

RemoteId = Annotated[str, Field(min_length=1, max_length=512)]


class BindCalendars(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"all": True, "direction": "two-way", "policy": "ask"}]},
    )

    calendars: list[RemoteId] = Field(
        default_factory=list, max_length=MAX_CALENDARS, description="Remote calendar ids (or `all`)"
    )
    all: bool = Field(
        default=False,
        description="Every calendar of the account not bound yet (those bound already are left as they "
        "are and named in already_bound); instead of `calendars`",
    )
    direction: Direction = "two-way"
    policy: ConflictPolicy = "ask"

    @model_validator(mode="after")
    def _one_of(self) -> BindCalendars:
        if self.all == bool(self.calendars):
            raise ValueError("give either calendars (remote calendar ids) or all: true")
        return self


class BindingMadeOut(BaseModel):
    remote_calendar_id: str
    calendar_id: str
    binding_id: str


class BindCalendarsOut(BaseModel):
    bindings: list[BindingMadeOut]
    already_bound: list[str]


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ProblemOut, "description": "No such account (or another user's)"},
    409: {"model": ProblemOut, "description": "A calendar named is bound already (nothing was bound)"},
    502: {"model": ProblemOut, "description": "The calendar provider failed while listing the account's calendars"},
}


def binding_routes(router: APIRouter, engine: Engine) -> None:
    @router.post("/accounts/{account_id}/bindings", status_code=201, response_model=BindCalendarsOut, responses=_ERRORS)
    def bind_calendars(
        account_id: Annotated[str, Path(max_length=64)], body: BindCalendars, caller: CallerDep
    ) -> dict[str, Any]:
        """Bind remote calendars of one of the caller's accounts, each to a new local calendar named
        after it, with one direction and conflict policy, all in one transaction (all or none)."""
        missing = HTTPException(404, detail=f"no account with id {account_id!r}")
        with engine.begin() as conn:
            if users.account_owner(conn, account_id) != caller.user_id:
                raise missing
            account = account_store.get_account(conn, account_id)
        client = provider_maker(engine)(account)
        try:
            listed = client.list_calendars()
        except (ProviderError, httpx.HTTPError) as exc:
            raise HTTPException(502, detail=f"could not list the account's calendars: {exc}") from exc
        finally:
            client.close()
        by_id = {c.remote_id: c for c in listed}
        if body.all:
            chosen = listed
        else:
            unknown = [r for r in body.calendars if r not in by_id]
            if unknown:
                raise HTTPException(
                    422,
                    detail=[
                        {
                            "loc": ["body", "calendars"],
                            "msg": f"the account has no calendar {unknown[0][:200]!r}",
                            "type": "value_error",
                        }
                    ],
                )
            chosen = [by_id[r] for r in body.calendars]
        try:
            made = setup.bind_calendars(
                engine,
                account_id,
                chosen,
                direction=body.direction,
                conflict_policy=body.policy,
                owner=caller.user_id,
                skip_bound=body.all,
            )
        except setup.SetupError as exc:
            raise HTTPException(409, detail=str(exc)) from exc
        return {
            "bindings": [
                {"remote_calendar_id": remote_id, "calendar_id": b.calendar_id, "binding_id": b.binding_id}
                for remote_id, b in made.bound
            ],
            "already_bound": made.already_bound,
        }
