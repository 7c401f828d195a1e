"""`calsync user ...` and `calsync apikey ...`: the users calsync serves and the API keys they call the
service with (store/users.py). A key is printed once, by `apikey create`, as the last word of its
output; only its hash is stored, so it cannot be shown again (revoke it and make another).

Commands that act for a user take `--user NAME_OR_ID`; without it they act for the default user:
the only one, else the first admin (`acting_user`)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from sqlalchemy import Connection

from calsync.cli.common import DbOption, JsonOption, database
from calsync.cli.ids import matching_ids, resolve_id
from calsync.cli.output import console, fail, markup_safe, print_json, print_table
from calsync.statuses import KEY_SCOPES, is_key_scope
from calsync.store import sessions as session_store
from calsync.store import users as user_store
from calsync.store.common import NotFound
from calsync.store.rows import UserRow

UserOption = Annotated[
    str | None,
    typer.Option(
        "--user", help="The calsync user (name or id) to act for; default: the only one, else the first admin."
    ),
]

MIN_PASSWORD = 8

user_app = typer.Typer(help="The users calsync serves (each owns its accounts and calendars).", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for the service's /api/v1 (Authorization: Bearer).", no_args_is_help=True)


def acting_user(conn: Connection, name_or_id: str | None) -> UserRow:
    """The user named, or the default one; a clear error for a name nobody has."""
    try:
        if name_or_id:
            try:
                return user_store.find_user(conn, name_or_id)
            except NotFound:  # no such name: maybe the start of an id (a whole name wins over a prefix)
                if not matching_ids(conn, "user", name_or_id):
                    raise
                return user_store.find_user(conn, resolve_id(conn, "user", name_or_id))
        return user_store.find_user(conn, user_store.default_owner(conn))
    except NotFound as exc:
        raise fail(f"{exc} (see `calsync user list`)") from exc


@user_app.command("create")
def user_create(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="May act for every user (admin API keys).")] = False,
    db: DbOption = None,
) -> None:
    """Add a user; prints its id (the last word)."""
    if not name.strip():
        raise fail("a user needs a name", 2)
    with database(db) as engine, engine.begin() as conn:
        try:
            user_id = user_store.create_user(conn, name.strip(), is_admin=admin)
        except user_store.NameTaken as exc:
            raise fail(str(exc)) from exc
    console.print(f"user {markup_safe(name.strip())}{' (admin)' if admin else ''}: {user_id}", highlight=False)


@user_app.command("passwd")
def user_passwd(
    name: Annotated[str, typer.Argument(help="The user (name or id).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (its first line).")
    ] = False,
    db: DbOption = None,
) -> None:
    """Set the password the user logs in to the web page with (only an Argon2id hash is stored)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        raise fail(f"a password needs at least {MIN_PASSWORD} characters", 2)
    with database(db) as engine, engine.begin() as conn:
        owner = acting_user(conn, name)
        session_store.set_password(conn, owner["id"], password)
    console.print(f"password set for user {markup_safe(owner['name'])}", highlight=False)


@user_app.command("login-link")
def user_login_link(
    name: Annotated[str, typer.Argument(help="The user (name or id).")],
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="The service's URL (default $CALSYNC_PUBLIC_URL).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Print a one-time login URL for the user (the last word): good once, for 15 minutes."""
    base = base_url or os.environ.get("CALSYNC_PUBLIC_URL")
    if not base:
        raise fail("where is the service? give --base-url or set CALSYNC_PUBLIC_URL", 2)
    if not base.startswith(("http://", "https://")):
        raise fail(f"--base-url must be an http(s) URL, not {base!r}", 2)
    with database(db) as engine, engine.begin() as conn:
        owner = acting_user(conn, name)
        token = session_store.create_login_token(conn, owner["id"])
    minutes = int(session_store.LOGIN_LINK_TTL.total_seconds() // 60)
    sys.stderr.write(f"a one-time login link for user {owner['name']}, good for {minutes} minutes:\n")
    sys.stdout.write(f"{session_store.login_url(base, token)}\n")  # plain write: a console could wrap it


@user_app.command("list")
def user_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """The users, oldest first."""
    with database(db) as engine, engine.begin() as conn:
        rows = user_store.list_users(conn)
    if as_json:
        print_json(rows)
        return
    print_table(
        ("id", "name", "admin", "created"),
        ((r["id"], r["name"], "yes" if r["is_admin"] else "", r["created_at"].isoformat()) for r in rows),
    )


@apikey_app.command("create")
def apikey_create(
    user: Annotated[str, typer.Option("--user", help="The user (name or id) the key acts for.")],
    scope: Annotated[str, typer.Option(help=f"One of {', '.join(KEY_SCOPES)}.")] = "write",
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")] = "",
    db: DbOption = None,
) -> None:
    """Make an API key and print it (the last word): the only time it is shown."""
    if not is_key_scope(scope):
        raise fail(f"--scope must be one of {', '.join(KEY_SCOPES)}, not {scope!r}", 2)
    with database(db) as engine, engine.begin() as conn:
        owner = acting_user(conn, user)
        if scope == "admin" and not owner["is_admin"]:
            raise fail(f"user {owner['name']} is not an admin: an admin key needs one (calsync user create --admin)")
        key_id, key = user_store.create_api_key(conn, owner["id"], scope, name)
    sys.stderr.write(f"API key {key_id} ({scope}) for user {owner['name']}; it is shown only now:\n")
    sys.stdout.write(f"{key}\n")  # plain write: a console could wrap or style it


@apikey_app.command("list")
def apikey_list(user: UserOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """API keys (never the keys themselves): all, or one user's."""
    with database(db) as engine, engine.begin() as conn:
        owner = acting_user(conn, user)["id"] if user else None
        rows = user_store.list_api_keys(conn, owner)
        names = {u["id"]: u["name"] for u in user_store.list_users(conn)}
    if as_json:
        print_json(rows)
        return
    print_table(
        ("id", "user", "name", "scope", "starts", "last used", "revoked"),
        (
            (
                r["id"],
                names.get(r["user_id"], r["user_id"]),
                r["name"],
                r["scope"],
                f"{r['prefix']}...",
                r["last_used_at"].isoformat() if r["last_used_at"] else "",
                r["revoked_at"].isoformat() if r["revoked_at"] else "",
            )
            for r in rows
        ),
    )


@apikey_app.command("revoke")
def apikey_revoke(key_id: str, db: DbOption = None) -> None:
    """Revoke a key at once (the service refuses it from its next request)."""
    with database(db) as engine, engine.begin() as conn:
        key_id = resolve_id(conn, "apikey", key_id)
        changed = user_store.revoke_api_key(conn, key_id)
    console.print(f"API key {key_id} {'revoked' if changed else 'was revoked already'}", highlight=False)
