"""The /emulator admin surface: reset, faults, request log, token invalidation, seeding, switches
and push channels. Admin requests are never logged or faulted."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.faults import admin_error, common_admin_routes, seed_route, switches_route
from calsync.emulators.google.emulator import GoogleEmulator
from calsync.emulators.google.errors import ApiError
from calsync.emulators.google.push import push_admin_routes
from calsync.emulators.oauth.google import google_admin_routes


def _admin_routes(emu: GoogleEmulator) -> list[Route]:
    """POST/DELETE endpoints tests and benchmarks use to steer the emulator (never logged or faulted)."""

    async def invalidate(request: Request) -> Response:
        try:
            epoch = emu.invalidate_tokens(request.path_params["cal"])
        except ApiError:
            return admin_error(404, "no such calendar")
        return JSONResponse({"calendarId": request.path_params["cal"], "epoch": epoch})

    return [
        *common_admin_routes(emu.reset, emu.faults, emu.commit_faults, emu.requests),
        Route("/emulator/calendars/{cal}/invalidate-tokens", invalidate, methods=["POST"]),
        seed_route(lambda cal, spec: {"created": emu.seed(cal, spec)}, ApiError, "no such calendar"),
        switches_route(lambda: dict(emu.switches), emu.set_switches),
        *push_admin_routes(emu.push),
        *google_admin_routes(emu.oauth),
    ]
