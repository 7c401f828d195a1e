"""`calsync account ...`: the calendar accounts calsync syncs. What each provider kind takes is read
from providers.registry, so a new kind needs no branch here."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import httpx
import typer

from calsync.cli.common import DbOption, JsonOption, database
from calsync.cli.connect import add_google_service_account, add_graph_app, connect
from calsync.cli.output import console, err, fail, markup_safe, print_json, print_table
from calsync.cli.users import UserOption, acting_user
from calsync.engine import setup
from calsync.model import Account
from calsync.providers import (
    KINDS,
    SUPPORTED,
    ProviderKind,
    UnknownProvider,
    provider_for,
    provider_kind,
)
from calsync.providers.base import AuthError, ProviderError, Unreachable
from calsync.providers.http import RetryPolicy
from calsync.store import accounts as account_store

app = typer.Typer(help=f"Calendar accounts: {', '.join(kind.label for kind in KINDS.values())}.", no_args_is_help=True)
app.command("connect")(connect)


@app.command("add")
def account_add(
    provider: Annotated[str, typer.Argument(help=f"One of: {', '.join(SUPPORTED)}.")],
    name: Annotated[
        str | None, typer.Option(help="A name to recognise the account by (CalDAV: user@host when not given).")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="CALSYNC_TOKEN", help="Bearer token (prompted for, hidden, when not given).")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", "--url", help="API root, e.g. an emulator's URL; for CalDAV, the server URL."),
    ] = None,
    username: Annotated[str | None, typer.Option(help="CalDAV user name.")] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="CALSYNC_CALDAV_PASSWORD",
            show_default=False,
            help="CalDAV password (prompted for, hidden, when not given).",
        ),
    ] = None,
    verify: Annotated[bool, typer.Option(help="Check the credentials by listing calendars first.")] = True,
    key_file: Annotated[str | None, typer.Option(help="google-service-account: the key JSON file.")] = None,
    subject: Annotated[str | None, typer.Option(help="google-service-account: the user to act for.")] = None,
    tenant: Annotated[str | None, typer.Option(help="graph-app: the directory (tenant id or domain).")] = None,
    client_id: Annotated[str | None, typer.Option(help="graph-app: the app registration's id.")] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(envvar="CALSYNC_CLIENT_SECRET", show_default=False, help="graph-app: the app's client secret."),
    ] = None,
    mailbox: Annotated[str | None, typer.Option(help="graph-app: the mailbox (UPN or user id) to sync.")] = None,
    authority_url: Annotated[
        str | None, typer.Option(help="graph-app: the identity platform's root (an emulator's).")
    ] = None,
    ca_file: Annotated[str | None, typer.Option(help="graph-app: an extra CA certificate to trust.")] = None,
    read_only: Annotated[bool, typer.Option(help="google-service-account: ask only to read events.")] = False,
    user: UserOption = None,
    db: DbOption = None,
) -> None:
    """Add an account and print its id.

    Besides the kinds above: `google-service-account` (Workspace domain-wide delegation, --key-file
    and --subject) and `graph-app` (Microsoft app-only access, --tenant --client-id --client-secret
    --mailbox). For a person's Google or Microsoft account, use `calsync account connect`. The
    account belongs to the calsync user `--user` (default: the only user, else the first admin)."""
    if provider == "google-service-account":
        add_google_service_account(name, key_file, subject, base_url, read_only, db, user)
        return
    if provider == "graph-app":
        add_graph_app(name, tenant, client_id, client_secret, mailbox, base_url, authority_url, ca_file, db, user)
        return
    try:
        kind = provider_kind(provider)
    except UnknownProvider as exc:
        raise fail(str(exc), 2) from exc
    credentials = gather_credentials(kind, base_url, {"token": token, "username": username, "password": password})
    if name is None and kind.default_name is not None:
        name = kind.default_name(base_url, credentials)
    if name is None or not name.strip():
        raise fail("--name must not be empty", 2)
    if verify:
        client = provider_for(Account("", provider, name, base_url, credentials), retry=RetryPolicy(attempts=2))
        try:
            client.list_calendars()
        except (ProviderError, httpx.HTTPError) as exc:
            raise fail(refusal(kind, base_url, exc)) from exc
        finally:
            client.close()
    with database(db) as engine:
        with engine.begin() as conn:
            owner = acting_user(conn, user)
        try:
            account_id = setup.add_account(engine, provider, name.strip(), base_url, credentials, owner=owner["id"])
        except setup.SetupError as exc:
            raise fail(str(exc), 2) from exc
    err.print(f"account {markup_safe(name.strip())} added for user {markup_safe(owner['name'])}", highlight=False)
    console.print(account_id, highlight=False)  # alone on standard output: scripts read it


NOT_DAV = (400, 404, 405, 410, 501)  # what a web server that does not speak WebDAV answers a PROPFIND


def refusal(kind: ProviderKind, base_url: str | None, exc: Exception) -> str:
    """Why checking a new account failed, in the words its owner can act on."""
    if isinstance(exc, AuthError):
        check = " and ".join(c.key.replace("username", "user name") for c in kind.credentials)
        return f"the server refused the credentials: check the {check} ({exc})"
    if isinstance(exc, Unreachable | httpx.HTTPError):
        return f"the account does not answer: {exc}"
    if kind.name == "caldav" and isinstance(exc, ProviderError) and (exc.reason == "not-dav" or exc.status in NOT_DAV):
        return f"{base_url} is not a CalDAV server (it does not answer CalDAV's PROPFIND): {exc}"
    return f"the account's server refused to list its calendars: {exc}"


def gather_credentials(kind: ProviderKind, base_url: str | None, given: dict[str, str | None]) -> dict[str, Any]:
    """The credentials `kind` takes, from the flags in `given` (by credential key); a missing secret is
    prompted for, hidden, on a terminal. Flags a kind does not take are ignored."""
    needed = (["--url"] if kind.needs_url else []) + [f"--{c.key}" for c in kind.credentials if not c.secret]
    if (kind.needs_url and not base_url) or any(not given[c.key] for c in kind.credentials if not c.secret):
        raise fail(f"{kind.label} needs {' and '.join(needed)}", 2)
    credentials: dict[str, Any] = {}
    for credential in kind.credentials:
        value = given[credential.key]
        if value is None and credential.secret:
            if not sys.stdin.isatty():
                raise fail(f"--{credential.key} is required (or set {credential.envvar})", 2)
            value = typer.prompt(credential.prompt or credential.key, hide_input=True)
        if not credential.may_be_empty and not (value or "").strip():
            raise fail(f"the {credential.key} must not be empty", 2)
        credentials[credential.key] = value
    return credentials


@app.command("list")
def account_list(user: UserOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List a user's accounts (credentials are never printed)."""
    with database(db) as engine, engine.begin() as conn:
        rows = account_store.list_accounts(conn, acting_user(conn, user)["id"])
    if as_json:
        print_json(rows)
        return
    print_table(
        ("id", "provider", "name", "state", "base url"),
        ((r["id"], r["provider"], r["name"], r["state"], r["base_url"] or "") for r in rows),
    )
