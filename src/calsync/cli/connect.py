"""`calsync account connect google|microsoft`: an account through the provider's consent page (the
installed-app loopback flow), and `calsync account add google-service-account|graph-app`: accounts
an organisation's administrator authorises once for many users, without each person's consent.

Nothing is stored until the provider has answered with tokens; the new (or reconnected) account's id
is the last word printed."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import webbrowser
from typing import Annotated, Any

import typer

from calsync.cli.common import DbOption, database
from calsync.cli.output import console, fail, markup_safe
from calsync.cli.users import UserOption, acting_user
from calsync.credentials import grants
from calsync.credentials.connect import ConnectError, GoogleClient, MicrosoftClient, consent_on_loopback
from calsync.engine import setup

MICROSOFT_NAMES = ("microsoft", "graph", "outlook")

ClientId = Annotated[str | None, typer.Option(help="Your OAuth client's id.")]
ClientSecret = Annotated[
    str | None, typer.Option(envvar="CALSYNC_CLIENT_SECRET", show_default=False, help="Your OAuth client's secret.")
]
BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", "--url", help="The provider's API root (an emulator's URL); default: the real one."),
]


def connect(
    provider: Annotated[str, typer.Argument(help="google, or microsoft (Outlook / Microsoft 365).")],
    name: Annotated[str | None, typer.Option(help="A name for the account (default: the user's address).")] = None,
    client_secrets: Annotated[
        str | None, typer.Option("--client-secrets", help="Google: the client JSON file from Cloud Console.")
    ] = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    base_url: BaseUrl = None,
    login_hint: Annotated[str | None, typer.Option(help="The account to sign in as, pre-filled.")] = None,
    tenant: Annotated[str, typer.Option(help="Microsoft: the directory (common, organizations, a tenant id).")] = (
        "common"
    ),
    authority_url: Annotated[
        str | None, typer.Option(help="Microsoft: the identity platform's root (an emulator's); default: Microsoft's.")
    ] = None,
    ca_file: Annotated[
        str | None, typer.Option(help="Microsoft: an extra CA certificate to trust (an emulator's, HTTPS).")
    ] = None,
    read_only: Annotated[bool, typer.Option(help="Ask only to read events (pull bindings).")] = False,
    browser: Annotated[bool, typer.Option(help="Open the consent page in a browser where one exists.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the consent's answer.")] = 300.0,
    user: UserOption = None,
    db: DbOption = None,
) -> None:
    """Connect an account through the provider's consent page and print its id (the last word).

    The consent URL is printed alone on a line of standard error; calsync waits for the browser's
    redirect on 127.0.0.1. Connecting a person already connected (for the same calsync `--user`) renews
    that account (after its grant was revoked, say) and its calendars resume syncing where they stopped."""
    kind = provider.lower()
    client: GoogleClient | MicrosoftClient
    if kind == "google":
        client = _google_client(client_secrets, client_id, client_secret, base_url, read_only)
        target = "google"
    elif kind in MICROSOFT_NAMES:
        if not client_id:
            raise fail("--client-id is required (your Entra app registration's application id)", 2)
        client = MicrosoftClient(client_id, client_secret, tenant, authority_url, ca_file, read_only)
        target = "graph"
    else:
        raise fail(f"cannot connect {provider!r}: google or microsoft", 2)
    try:
        credentials = consent_on_loopback(client, login_hint, lambda url: _show(url, browser), timeout)
    except ConnectError as exc:
        raise fail(str(exc)) from exc
    _store(target, name or credentials.get("user") or login_hint or target, base_url, credentials, db, user)


def _google_client(
    client_secrets: str | None, client_id: str | None, client_secret: str | None, base_url: str | None, read_only: bool
) -> GoogleClient:
    if client_secrets:
        return GoogleClient.from_client_secrets(client_secrets, base_url, read_only)
    if not client_id:
        raise fail("--client-secrets FILE or --client-id ID (with --client-secret S) is required", 2)
    return GoogleClient(client_id, client_secret, base_url, read_only)


def _show(url: str, browser: bool) -> None:
    """The consent URL, alone on its line of standard error (a person copies it; a test reads it)."""
    sys.stderr.write(f"Open this address to give calsync access (waiting for the answer):\n{url}\n")
    sys.stderr.flush()
    if browser:
        with contextlib.suppress(webbrowser.Error):  # no browser here: the printed address is enough
            webbrowser.open(url)


def _store(
    provider: str,
    name: str,
    base_url: str | None,
    credentials: dict[str, Any],
    db: str | None,
    user: str | None,
) -> None:
    with database(db) as engine:
        with engine.begin() as conn:
            owner = acting_user(conn, user)
        try:
            connected = setup.connect_account(engine, provider, name, base_url, credentials, owner=owner["id"])
        except setup.SetupError as exc:
            raise fail(str(exc), 2) from exc
    verb = "reconnected" if connected.reconnected else "connected"
    who = credentials.get("user") or name
    console.print(
        f"{verb} {markup_safe(who)} for user {markup_safe(owner['name'])}: {connected.account_id}", highlight=False
    )


def add_google_service_account(
    name: str | None,
    key_file: str | None,
    subject: str | None,
    base_url: str | None,
    read_only: bool,
    db: str | None,
    user: str | None = None,
) -> None:
    """A Workspace service account acting for `subject` (domain-wide delegation): one account per user."""
    if not key_file or not subject:
        raise fail("google-service-account needs --key-file KEY.json and --subject user@domain", 2)
    try:
        with open(key_file, encoding="utf-8") as handle:
            key = json.load(handle)
        if key.get("type") != "service_account" or not key.get("private_key") or not key.get("client_email"):
            raise ValueError("not a service account key (type, private_key, client_email)")
    except (OSError, ValueError) as exc:
        raise fail(f"{key_file}: {exc}", 2) from exc
    scopes = [
        "https://www.googleapis.com/auth/calendar.events" + (".readonly" if read_only else ""),
        "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
    ]
    credentials = {"grant": "google-service-account", "key": key, "subject": subject, "scopes": scopes}
    _first_token(credentials)
    _store("google", name or subject, base_url, credentials, db, user)


def add_graph_app(
    name: str | None,
    tenant: str | None,
    client_id: str | None,
    client_secret: str | None,
    mailbox: str | None,
    base_url: str | None,
    authority_url: str | None,
    ca_file: str | None,
    db: str | None,
    user: str | None = None,
) -> None:
    """App-only (client credentials) access to one mailbox of the tenant: requests go to /users/{user}."""
    if not (tenant and client_id and client_secret and mailbox):
        raise fail("graph-app needs --tenant, --client-id, --client-secret and --mailbox (a UPN or user id)", 2)
    credentials = {
        "grant": "microsoft-app",
        **MicrosoftClient(client_id, client_secret, tenant, authority_url, ca_file).settings,
        "mailbox": mailbox,
    }
    _first_token(credentials)
    _store("graph", name or mailbox, base_url, credentials, db, user)


def _first_token(credentials: dict[str, Any]) -> None:
    """Ask for a token before storing: a wrong key, secret or delegation is refused now, not at the first sync."""
    try:
        issued = grants.refresh(credentials)
    except grants.GrantError as exc:
        raise fail(f"the token endpoint refused: {exc.reason}") from exc
    credentials["access_token"] = issued.access_token
    credentials["expires_at"] = issued.expires_at
    credentials["issued_at"] = time.time()
