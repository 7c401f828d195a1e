"""Web login for people (store/sessions.py keeps the state): the login page, password and one-time
link logins, logout, `GET /api/v1/session` (who is logged in, and the CSRF token the page sends back),
the page's redirect to /login, and the security headers every answer carries.

The session id lives only in the `calsync_session` cookie (HttpOnly, so the page's scripts cannot
read it; SameSite=Lax, so other sites' forms and fetches do not carry it on a POST; Secure when the
public URL is https). Nothing here logs a password, session id or login token."""

from __future__ import annotations

import hmac
from html import escape
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from calsync.service.auth import CSRF_HEADER, SESSION_COOKIE, Auth, Caller, authenticate
from calsync.service.errors import API_ERRORS
from calsync.store import sessions, users
from calsync.store.common import NotFound

MAX_FORM_BYTES = 4096  # a user name and a password; a bigger login form is refused unread
WRONG_LOGIN = "Wrong user name or password."
BAD_LINK = "This login link is unknown, used or expired: ask for a new one (calsync user login-link)."

# the page loads only its own files; FullCalendar injects its <style> element, hence style's inline
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc load Swagger UI / ReDoc from a CDN with an inline script: their own policy
DOCS_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'self'"
DOCS_PATHS = ("/docs", "/redoc")


class SessionInfo(BaseModel):
    """Who the page acts for; `csrf_token` is null for a key, which needs none."""

    user_id: str
    name: str
    is_admin: bool
    csrf_token: str | None


def _login_page(message: str = "", status_code: int = 200) -> HTMLResponse:
    error = f'<p class="login-error" role="alert">{escape(message)}</p>' if message else ""
    body = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>calsync: log in</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/app.css">
</head>
<body class="login-body">
  <main class="login-box">
    <h1><span class="logo" aria-hidden="true">◷</span> calsync</h1>
    {error}
    <form method="post" action="/login" class="login-form">
      <label class="field"><span>User</span>
        <input name="user" id="login-user" autocomplete="username" required autofocus></label>
      <label class="field"><span>Password</span>
        <input name="password" id="login-password" type="password" autocomplete="current-password" required></label>
      <button type="submit" class="primary" id="login-submit">Log in</button>
    </form>
    <p class="muted small">No password? <code>calsync user passwd NAME</code> sets one;
      <code>calsync user login-link NAME</code> prints a one-time link.</p>
  </main>
</body>
</html>
"""
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


def _logged_in(auth: Auth, user_id: str, to: str = "/") -> RedirectResponse:
    with auth.engine.begin() as conn:
        session_id, _session = sessions.create_session(conn, user_id)
    response = RedirectResponse(to, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(sessions.SESSION_TTL.total_seconds()),
        path="/",
        secure=auth.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    return response


def page_allowed(request: Request) -> bool:
    """Whether `/` may be served: a live session, or the tests' open page."""
    auth: Auth = request.app.state.auth
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        with auth.engine.begin() as conn:
            if sessions.find_session(conn, session_id) is not None:
                return True
    return auth.open_page_user is not None


def login_router(engine: Engine) -> APIRouter:
    """/login (page, password form, one-time link) and /logout."""
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    def login_page(request: Request) -> Response:
        if request.cookies.get(SESSION_COOKIE) and page_allowed(request):
            return RedirectResponse("/", status_code=303)
        return _login_page()

    @router.post("/login")
    async def login(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return _login_page(WRONG_LOGIN, 413)
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
        name = (form.get("user") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        with engine.begin() as conn:
            user_id = sessions.check_password(conn, name, password) if name and password else None
        if user_id is None:
            return _login_page(WRONG_LOGIN, 401)
        return _logged_in(request.app.state.auth, user_id)

    @router.get("/login/link")
    def login_link(request: Request, token: str = "") -> Response:
        with engine.begin() as conn:
            user_id = sessions.redeem_login_token(conn, token) if token else None
        if user_id is None:
            return _login_page(BAD_LINK, 401)
        return _logged_in(request.app.state.auth, user_id)

    @router.post("/logout")
    def logout(request: Request) -> Response:
        """End the session (the page sends its CSRF token: another site cannot log one out)."""
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            with engine.begin() as conn:
                session = sessions.find_session(conn, session_id)
                if session is not None:
                    if not hmac.compare_digest(
                        request.headers.get(CSRF_HEADER, "").encode(), session.csrf_token.encode()
                    ):
                        return Response(status_code=403)
                    sessions.end_session(conn, session_id)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=request.app.state.auth.secure_cookies, httponly=True)
        return response

    return router


def session_router(engine: Engine, prefix: str) -> APIRouter:
    """`GET /api/v1/session`: the caller, and for a login session its CSRF token."""
    router = APIRouter(prefix=prefix, responses=API_ERRORS)

    @router.get("/session", response_model=SessionInfo)
    def who(request: Request, caller: Annotated[Caller, Depends(authenticate)]) -> SessionInfo:
        """Who the request acts for; the page reads its CSRF token here (send it in X-CSRF-Token)."""
        with engine.begin() as conn:
            try:
                user = users.find_user(conn, caller.user_id)
            except NotFound:
                user = None
            session_id = request.cookies.get(SESSION_COOKIE)
            session = sessions.find_session(conn, session_id) if session_id and caller.key_id is None else None
        if user is None:
            return SessionInfo(user_id=caller.user_id, name="", is_admin=False, csrf_token=None)
        token = session.csrf_token if session is not None and session.user_id == caller.user_id else None
        return SessionInfo(user_id=user["id"], name=user["name"], is_admin=user["is_admin"], csrf_token=token)

    return router


class SecurityHeaders:
    """Adds the security headers to every answer (a plain ASGI middleware: streaming answers too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = DOCS_CSP if path.startswith(DOCS_PATHS) else CSP

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                # a route that set one of these itself (a webhook receiver's nosniff) keeps its own, once
                headers += [
                    (name, value)
                    for name, value in (
                        (b"content-security-policy", csp.encode()),
                        (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"same-origin"),
                        (b"x-frame-options", b"DENY"),
                    )
                    if name not in present
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def add_login(app: FastAPI, engine: Engine, prefix: str) -> None:
    """The login routes, `/api/v1/session` and the security headers, on the service's app."""
    app.include_router(login_router(engine))
    app.include_router(session_router(engine, prefix))
    app.add_middleware(SecurityHeaders)
