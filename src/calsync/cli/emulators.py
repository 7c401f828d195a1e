"""`calsync emulator ...`: local stand-ins for provider APIs, each served in the foreground."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from calsync.cli.output import err

app = typer.Typer(help="Local stand-ins for provider APIs, for tests and demos.", no_args_is_help=True)

HostOption = Annotated[str, typer.Option(help="Address to listen on (loopback by default).")]
OAuthOption = Annotated[
    bool, typer.Option("--oauth", help="Accept only access tokens the emulator's authorization server issued.")
]
TlsDirOption = Annotated[
    str | None,
    typer.Option(
        "--tls-dir",
        help="Serve https with a local CA and certificate kept in this directory (made if missing); "
        "clients trust DIR/ca.pem. MSAL needs it: its authority must be https.",
    ),
]


_EMULATORS = {
    "google": "GoogleEmulator",
    "zoom": "ZoomEmulator",
    "graph": "GraphEmulator",
    "confhook": "ConfhookEmulator",
}


def _serve_emulator(kind: str, host: str, port: int, banner: str, tls_dir: str | None = None, **options: Any) -> None:
    """Start one emulator (module calsync.emulators.<kind>) in the foreground, over https with ``tls_dir``."""
    import importlib

    from calsync.emulators.server import serve_forever

    module = importlib.import_module(f"calsync.emulators.{kind}")
    emulator = getattr(module, _EMULATORS[kind])(**options)
    certfile = keyfile = None
    scheme = "http"
    if tls_dir is not None:
        from calsync.emulators.oauth.tls import ensure_tls_files

        files = ensure_tls_files(tls_dir, (host,))
        certfile, keyfile, scheme = files.cert, files.key, "https"
        err.print(f"TLS: clients trust {files.ca_cert}")
    err.print(banner.format(base=f"{scheme}://{host}:{port}"))
    serve_forever(module.create_app(emulator), host=host, port=port, certfile=certfile, keyfile=keyfile)


@app.command("google")
def emulator_google(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: HostOption = "127.0.0.1",
    oauth: OAuthOption = False,
    tls_dir: TlsDirOption = None,
) -> None:
    """Run the Google Calendar API v3 emulator (and Google's authorization server) until Ctrl-C."""
    _serve_emulator(
        "google",
        host,
        port,
        "Google Calendar emulator on {base}/calendar/v3/ (OAuth: {base}/o/oauth2/v2/auth, {base}/token, "
        "{base}/revoke; admin: /emulator/...)",
        tls_dir,
        oauth=oauth,
    )


@app.command("zoom")
def emulator_zoom(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8766, host: HostOption = "127.0.0.1"
) -> None:
    """Run the Zoom-compatible emulator (/v2/... and /oauth/token) until Ctrl-C."""
    _serve_emulator("zoom", host, port, "Zoom emulator on {base}/v2/ (OAuth: /oauth/token, admin: /emulator/...)")


@app.command("graph")
def emulator_graph(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8768,
    host: HostOption = "127.0.0.1",
    oauth: OAuthOption = False,
    tls_dir: TlsDirOption = None,
) -> None:
    """Run the Microsoft Graph (Outlook calendars) emulator (and the identity platform v2.0) until Ctrl-C."""
    _serve_emulator(
        "graph",
        host,
        port,
        "Microsoft Graph emulator on {base}/v1.0/ (identity platform: {base}/{{tenant}}/oauth2/v2.0/..., "
        "authority {base}/{{tenant}}; admin: /emulator/...)",
        tls_dir,
        oauth=oauth,
    )


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
