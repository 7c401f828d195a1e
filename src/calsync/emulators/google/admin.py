"""The /emulator admin surface: reset, faults, request log, token invalidation, seeding, switches
and push channels. Admin requests are never logged or faulted."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.faults import (
    admin_error,
    admin_json,
    common_admin_routes,
    switches_route,
)
from calsync.emulators.google.emulator import GoogleEmulator
from calsync.emulators.google.errors import ApiError
from calsync.emulators.google.push import push_admin_routes


def _admin_routes(emu: GoogleEmulator) -> list[Route]:
    """POST/DELETE endpoints tests and benchmarks use to steer the emulator (never logged or faulted)."""

    async def invalidate(request: Request) -> Response:
        try:
            epoch = emu.invalidate_tokens(request.path_params["cal"])
        except ApiError:
            return admin_error(404, "no such calendar")
        return JSONResponse({"calendarId": request.path_params["cal"], "epoch": epoch})

    async def seed(request: Request) -> Response:
        try:
            spec = await admin_json(request)
            created = await run_in_threadpool(emu.seed, request.path_params["cal"], spec)
        except ApiError:
            return admin_error(404, "no such calendar")
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse({"created": created})

    return [
        *common_admin_routes(emu.reset, emu.faults, emu.commit_faults, emu.requests),
        Route("/emulator/calendars/{cal}/invalidate-tokens", invalidate, methods=["POST"]),
        Route("/emulator/calendars/{cal}/seed", seed, methods=["POST"]),
        switches_route(lambda: dict(emu.switches), emu.set_switches),
        *push_admin_routes(emu.push),
    ]
