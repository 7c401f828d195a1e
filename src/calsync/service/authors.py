"""Who a request's changes are by, as the event's history shows them (store/journal.Author).

- an API key: `api key <key name>` (an unnamed key: its shown prefix);
- the web page's login session (or the open page of the tests and the demo): `web user <user name>`;
- an admin acting for a user (`X-Calsync-User`): `admin <admin's user name> for <user name>`, with
  `via api key <key name>` after it when a key did it.

The side is always "local". `AuthorDep` is the dependency routes that write take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection

from calsync.model import LOCAL_SOURCE
from calsync.service.auth import SESSION_COOKIE, Auth, CallerDep
from calsync.store import sessions, users
from calsync.store.common import NotFound
from calsync.store.journal import Author


def _name(conn: Connection, user_id: str) -> str:
    try:
        return str(users.find_user(conn, user_id)["name"])
    except NotFound:
        return user_id


def request_author(request: Request, caller: CallerDep) -> Author:
    """The author of the changes this request makes (see the module's note)."""
    auth: Auth = request.app.state.auth
    with auth.engine.begin() as conn:
        for_whom = _name(conn, caller.user_id)
        if caller.key_id is not None:
            label = users.key_label(conn, caller.key_id)
            key_name, key_owner = label if label is not None else (caller.key_id[:8], caller.user_id)
            if key_owner == caller.user_id:
                return Author(LOCAL_SOURCE, f"api key {key_name}")
            return Author(LOCAL_SOURCE, f"admin {_name(conn, key_owner)} for {for_whom} via api key {key_name}")
        session_id = request.cookies.get(SESSION_COOKIE)
        session = sessions.find_session(conn, session_id) if session_id else None
        if session is not None and session.user_id != caller.user_id:
            return Author(LOCAL_SOURCE, f"admin {_name(conn, session.user_id)} for {for_whom}")
        return Author(LOCAL_SOURCE, f"web user {for_whom}")


AuthorDep = Annotated[Author, Depends(request_author)]
