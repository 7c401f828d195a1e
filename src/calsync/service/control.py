"""The service's control endpoint: `calsync sync` asks a running service to sync now.

Only callers who can read the service's record file (service/runtime.py) know the secret, since a
sync can be told to lift the mass-delete guard. The sync runs in the request, on the service's warm
engine and provider connections, with the bindings leased so the workers keep off them meanwhile.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from calsync.budgets import DEFAULT_BUDGETS, RequestBudget
from calsync.conferencing.base import ConferenceAdapter
from calsync.engine.pool import WarmProviders
from calsync.engine.sync import BindingBusy, sync_held
from calsync.hooks.delivery import deliver_due
from calsync.store.common import NotFound
from calsync.views import jsonable

log = logging.getLogger(__name__)
WEBHOOK_SECONDS = 10.0  # the outbound webhooks due after a requested sync are delivered for at most this long


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bindings: list[str] | None = Field(default=None, max_length=10_000)
    full: bool = False
    force: bool = False


def control_router(
    engine: Engine,
    adapters: dict[str, ConferenceAdapter] | None,
    token: str,
    poll_interval: float = 300.0,
    providers: WarmProviders | None = None,
    budgets: Mapping[str, RequestBudget] = DEFAULT_BUDGETS,
) -> APIRouter:
    """`providers`: clients kept warm between requested syncs (the service closes them when it stops);
    `budgets`: the request budgets their requests spend, as the workers' do."""
    router = APIRouter(prefix="/control", include_in_schema=False)
    expected = f"Bearer {token}".encode()

    @router.post("/sync")
    def sync_now(body: SyncRequest, authorization: Annotated[str, Header()] = "") -> dict[str, Any]:
        """One sync of the named bindings (all when none), answered with the report `calsync sync`
        prints. A plain `def`: it runs in the thread pool, the event loop keeps serving."""
        if not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, detail="the control secret is missing or wrong")
        try:
            report = sync_held(
                engine,
                f"control-{uuid.uuid4().hex[:12]}",
                binding_ids=body.bindings,
                full=body.full,
                force=body.force,
                adapters=adapters,
                poll_interval=poll_interval,
                providers=providers,
                budgets=budgets,
            )
        except NotFound as exc:
            raise HTTPException(404, detail=str(exc)) from exc
        except BindingBusy as exc:
            raise HTTPException(409, detail=str(exc)) from exc
        except SQLAlchemyError as exc:  # the database, not the request: say so, and that it may pass
            log.exception("a requested sync failed in the database")
            raise HTTPException(
                503, detail=f"the service's database failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            ) from exc
        deliver_due(engine, WEBHOOK_SECONDS)  # as `calsync sync` does in its own process
        return {"ok": report.ok, "report": jsonable(report.as_dict())}

    return router
