"""Who is calling: API keys (`Authorization: Bearer cs_<id>_<secret>`) resolved to a `Caller`.

Every `/api/v1` route depends on `authenticate` (create_app adds it to the routers), and a route that
reads or writes rows takes the `Caller` (`CallerDep`, the same dependency, resolved once a request)
to keep to its user's rows. Scopes: `read` may only GET (and HEAD); `write` may do everything to its
own user's rows; `admin` may also act for any user, named in `X-Calsync-User` (how an app's backend
serves its own users through one key), and read `/metrics`.

Answers: no key, or an unknown, revoked or malformed one -> 401 with `WWW-Authenticate: Bearer
realm="calsync"` (plus `error="invalid_token"` when a key was sent); a read key on a write route, or
a non-admin key naming another user in X-Calsync-User -> 403; an admin key naming a user that does not
exist -> 422 (the header is bad input; the object routes keep 404 for rows). Another user's rows are
404, exactly like rows that do not exist, so no answer tells whether they do.

A Caller need not come from a key (`key_id` None). A request without an Authorization header may
carry the web login's session cookie (service/login.py, store/sessions.py): its user, with write
scope (admin for an admin). A browser sends that cookie on its own, also on requests another site
makes it send, so a state-changing request authenticated by the cookie must also carry the session's
CSRF token in `X-CSRF-Token`, which only the page can read (GET /api/v1/session): else 403. A key is
never sent by a browser on its own, so key requests need no CSRF token. `open_page_user` (tests
only) lets requests with neither act as one user."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from calsync.statuses import KeyScope
from calsync.store import sessions, users
from calsync.store.common import NotFound

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ACT_AS_HEADER = "X-Calsync-User"
REALM = 'Bearer realm="calsync"'
SESSION_COOKIE = "calsync_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Caller:
    """The user a request acts for, with what it may do; `key_id` None when no key stood for it."""

    user_id: str
    scope: KeyScope
    key_id: str | None = None

    @property
    def may_write(self) -> bool:
        return self.scope in ("write", "admin")


@dataclass(frozen=True)
class Auth:
    """What create_app keeps in `app.state.auth` for the dependencies below."""

    engine: Engine
    open_page_user: str | None = None
    secure_cookies: bool = False  # the public URL is https: the session cookie is `Secure`


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="cs_<key id>_<secret>",
    description=(
        "An API key from `calsync apikey create`. An admin key may act for any user by naming them "
        f"(id or name) in `{ACT_AS_HEADER}`. 401: no key, or an unknown or revoked one; 403: a read key "
        "on a write route, or another user named without an admin key."
    ),
)


def _unauthorized(sent: bool) -> HTTPException:
    challenge = f'{REALM}, error="invalid_token"' if sent else REALM
    detail = "the API key is unknown, revoked or malformed" if sent else "an API key is needed (Authorization: Bearer)"
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": challenge})


def resolve(request: Request, token: str | None, *, allow_page: bool = True) -> Caller:
    """The Caller of a request, or the HTTPException its credentials earn (see the module's note)."""
    auth: Auth = request.app.state.auth
    sent = "authorization" in request.headers
    session_id = request.cookies.get(SESSION_COOKIE)
    if not sent and allow_page and session_id:
        caller = _session_caller(request, auth.engine, session_id)
    elif not sent and allow_page and auth.open_page_user is not None:
        caller = Caller(auth.open_page_user, "write")
    else:
        if token is None:
            raise _unauthorized(sent)
        with auth.engine.begin() as conn:
            owner = users.check_api_key(conn, token)
        if owner is None:
            raise _unauthorized(True)
        caller = Caller(owner.user_id, owner.scope, owner.key_id)
    named = request.headers.get(ACT_AS_HEADER)
    if named is not None:
        caller = _act_as(auth.engine, caller, named.strip())
    return caller


def _session_caller(request: Request, engine: Engine, session_id: str) -> Caller:
    """The logged-in user of a live session; 401 for a dead one, 403 for a write without its CSRF token."""
    with engine.begin() as conn:
        session = sessions.find_session(conn, session_id)
        user = None
        if session is not None:
            try:
                user = users.find_user(conn, session.user_id)
            except NotFound:
                user = None
    if session is None or user is None:
        raise HTTPException(
            401, detail="the login session has ended: log in again", headers={"WWW-Authenticate": REALM}
        )
    if request.method not in READ_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise HTTPException(403, detail=f"a missing or wrong CSRF token ({CSRF_HEADER})")
    return Caller(user["id"], "admin" if user["is_admin"] else "write")


def _act_as(engine: Engine, caller: Caller, named: str) -> Caller:
    with engine.begin() as conn:
        try:
            user = users.find_user(conn, named)
        except NotFound:
            user = None
    if caller.scope != "admin":
        if user is not None and user["id"] == caller.user_id:
            return caller
        raise HTTPException(403, detail=f"only an admin key may act for another user ({ACT_AS_HEADER})")
    if user is None:
        raise HTTPException(
            422,
            detail=[{"loc": ["header", ACT_AS_HEADER.lower()], "msg": "no such user", "type": "value_error"}],
        )
    return Caller(user["id"], caller.scope, caller.key_id)


def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """The dependency of every `/api/v1` route: the caller, allowed to use this method."""
    caller = resolve(request, credentials.credentials if credentials else None)
    if request.method not in READ_METHODS and not caller.may_write:
        raise HTTPException(403, detail="this API key may only read (its scope is read)")
    return caller


def authenticate_admin(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """An admin key and nothing else (the open page does not count): /metrics."""
    caller = resolve(request, credentials.credentials if credentials else None, allow_page=False)
    if caller.scope != "admin":
        raise HTTPException(403, detail="an admin API key is required")
    return caller


CallerDep = Annotated[Caller, Depends(authenticate)]


def health_router(prefix: str) -> APIRouter:
    """The one unauthenticated `/api/v1` route: a liveness probe that says nothing else."""
    router = APIRouter(prefix=prefix)

    @router.get("/health")
    def health() -> dict[str, str]:
        """Whether the service answers (no key needed, nothing about any user)."""
        return {"status": "ok"}

    return router
