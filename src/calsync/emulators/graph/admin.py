"""The /emulator admin surface: reset, faults, request log, seeding, delta token expiry, switches,
subscriptions and their lifecycle, Outlook-side event moves and cancels, and push deliveries.
Admin requests are never logged, faulted or throttled."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.faults import (
    admin_error,
    admin_json,
    common_admin_routes,
    seed_route,
    switches_route,
)
from calsync.emulators.graph.emulator import GraphEmulator
from calsync.emulators.graph.errors import GraphError
from calsync.emulators.oauth.microsoft import microsoft_admin_routes
from calsync.emulators.push_hub import delivery_admin_routes


def _admin_routes(emu: GraphEmulator) -> list[Route]:
    """Endpoints tests and benchmarks use to steer the emulator (never logged, faulted or throttled)."""

    async def expire_delta(request: Request) -> Response:
        try:
            body = await admin_json(request)
            user = body.get("user") if isinstance(body, dict) else None
            if user is not None and not isinstance(user, str):
                raise ValueError("user must be a mailbox address")
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse({"epoch": emu.expire_delta_tokens(user.lower() if user else None)})

    async def subscriptions(request: Request) -> Response:
        return JSONResponse({"subscriptions": emu.admin_subscriptions()})

    async def lifecycle(request: Request) -> Response:
        try:
            body = await admin_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")  # noqa: TRY004 - answered as 400
            pause = body.get("pause", False)
            if not isinstance(pause, bool):
                raise ValueError("pause must be true or false")  # noqa: TRY004 - answered as 400
            item = emu.lifecycle(request.path_params["sub"], str(body.get("event")), pause)
        except KeyError:
            return admin_error(404, "no such subscription")
        except LookupError as exc:
            return admin_error(409, str(exc))
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse(item, status_code=202)

    async def expire_subscription(request: Request) -> Response:
        if not emu.expire_subscription(request.path_params["sub"]):
            return admin_error(404, "no such subscription")
        return JSONResponse({"expired": True})

    async def event_action(request: Request) -> Response:
        try:
            body = await admin_json(request)
            if not isinstance(body, dict) or not isinstance(body.get("user"), str):
                raise ValueError("body needs 'user' (the mailbox address)")  # noqa: TRY004 - answered as 400
            email, event_id = body["user"].lower(), request.path_params["ev"]
            if request.path_params["action"] == "move":
                if not isinstance(body.get("calendarId"), str):
                    raise ValueError("body needs 'calendarId'")
                return JSONResponse(emu.move_event(email, event_id, body["calendarId"]))
            if request.path_params["action"] == "cancel-by-organizer":
                emu.cancel_by_organizer(email, event_id)
                return JSONResponse({"cancelled": True})
            return admin_error(404, "unknown action (move, cancel-by-organizer)")
        except GraphError as err:
            return admin_error(err.status, err.message)
        except ValueError as exc:
            return admin_error(400, str(exc))

    return [
        *common_admin_routes(emu.reset, emu.faults, emu.commit_faults, emu.requests),
        seed_route(emu.seed, GraphError, "no such calendar (give a calendar id or a mailbox address)"),
        Route("/emulator/delta/expire", expire_delta, methods=["POST"]),
        switches_route(lambda: dict(emu.switches), emu.set_switches),
        Route("/emulator/subscriptions", subscriptions, methods=["GET"]),
        Route("/emulator/subscriptions/{sub}/lifecycle", lifecycle, methods=["POST"]),
        Route("/emulator/subscriptions/{sub}/expire", expire_subscription, methods=["POST"]),
        Route("/emulator/events/{ev}/{action}", event_action, methods=["POST"]),
        *delivery_admin_routes(emu.push),
        *microsoft_admin_routes(emu.oauth),
    ]
