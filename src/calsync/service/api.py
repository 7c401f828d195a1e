"""The REST API (`/api/v1`). Sync health now; events and conflicts join with two-way sync."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import Engine

from calsync.engine.health import status_snapshot


def api_router(engine: Engine) -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    @router.get("/status")
    def status() -> dict[str, Any]:
        return status_snapshot(engine)

    return router
