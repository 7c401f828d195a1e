"""`calsync emulator ...`: local stand-ins for provider APIs, each served in the foreground."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from calsync.cli.output import err

app = typer.Typer(help="Local stand-ins for provider APIs, for tests and demos.", no_args_is_help=True)

HostOption = Annotated[str, typer.Option(help="Address to listen on (loopback by default).")]


_EMULATORS = {
    "google": "GoogleEmulator",
    "zoom": "ZoomEmulator",
    "graph": "GraphEmulator",
    "confhook": "ConfhookEmulator",
}


def _serve_emulator(kind: str, host: str, port: int, banner: str, **options: Any) -> None:
    """Start one emulator (module calsync.emulators.<kind>) in the foreground."""
    import importlib

    from calsync.emulators.server import serve_forever

    module = importlib.import_module(f"calsync.emulators.{kind}")
    emulator = getattr(module, _EMULATORS[kind])(**options)
    err.print(banner.format(base=f"http://{host}:{port}"))
    serve_forever(module.create_app(emulator), host=host, port=port)


@app.command("google")
def emulator_google(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765, host: HostOption = "127.0.0.1"
) -> None:
    """Run the Google Calendar API v3 emulator until Ctrl-C."""
    _serve_emulator("google", host, port, "Google Calendar emulator on {base}/calendar/v3/ (admin: /emulator/...)")


@app.command("zoom")
def emulator_zoom(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8766, host: HostOption = "127.0.0.1"
) -> None:
    """Run the Zoom-compatible emulator (/v2/... and /oauth/token) until Ctrl-C."""
    _serve_emulator("zoom", host, port, "Zoom emulator on {base}/v2/ (OAuth: /oauth/token, admin: /emulator/...)")


@app.command("graph")
def emulator_graph(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8768, host: HostOption = "127.0.0.1"
) -> None:
    """Run the Microsoft Graph (Outlook calendars) emulator until Ctrl-C."""
    _serve_emulator("graph", host, port, "Microsoft Graph emulator on {base}/v1.0/ (admin: /emulator/...)")


@app.command("confhook")
def emulator_confhook(
    secret: Annotated[str, typer.Option(envvar="CALSYNC_CONFHOOK_SECRET", help="Shared HMAC secret.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8767,
    host: HostOption = "127.0.0.1",
) -> None:
    """Run the reference conference system that speaks calsync's signed webhook protocol."""
    _serve_emulator(
        "confhook", host, port, "webhook conference system on {base}/hook (admin: /emulator/...)", secret=secret
    )
