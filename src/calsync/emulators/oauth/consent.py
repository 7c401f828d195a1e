"""The browser side both flavours share: the consent page (the ``login_hint`` user, an ``Allow`` and a
``Deny`` button), error pages, the redirect back to the client, and which redirect URIs are acceptable.

The page is a plain HTML form so that a test can follow it with any HTTP client (GET the
authorization URL, POST the form with ``decision=allow``, read ``Location``) and a browser driven by
Playwright can click it.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.responses import HTMLResponse, RedirectResponse, Response

from calsync.emulators.common import is_loopback

__all__ = ["consent_page", "error_page", "form_post_page", "redirect_back", "redirect_uri_allowed"]

_STYLE = "body{font-family:sans-serif;max-width:32em;margin:3em auto}button{margin-right:1em;padding:.4em 1.2em}"


def consent_page(
    action: str, request_id: str, brand: str, client_id: str, user: str | None, scopes: list[str]
) -> HTMLResponse:
    """The page that asks ``user`` to let ``client_id`` use ``scopes``; without a ``login_hint`` it asks
    for the account first (an email field)."""
    who = (
        f'<p id="user">Signed in as <strong>{escape(user)}</strong></p>'
        if user
        else '<p><label>Account <input type="email" name="login_hint" required></label></p>'
    )
    items = "".join(f"<li>{escape(s)}</li>" for s in scopes)
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(brand)}: sign in</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(brand)}</h1>"
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="request" value="{escape(request_id)}">{who}'
        f"<p><code>{escape(client_id)}</code> wants to:</p><ul>{items}</ul>"
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button>'
        "</form></body></html>"
    )
    return HTMLResponse(body)


def error_page(status: int, brand: str, error: str, description: str) -> HTMLResponse:
    """What the provider shows instead of redirecting when the client or its redirect URI is wrong."""
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(brand)}: error</title></head>"
        f'<body><h1>{escape(brand)}</h1><p id="error">Error {status}: {escape(error)}</p>'
        f'<p id="error_description">{escape(description)}</p></body></html>'
    )
    return HTMLResponse(body, status_code=status)


def redirect_back(redirect_uri: str, params: dict[str, str], mode: str = "query") -> Response:
    """The answer to the client: its ``redirect_uri`` with ``params`` in the query (or the fragment, or
    an auto-submitted form for ``form_post``)."""
    if mode == "form_post":
        return form_post_page(redirect_uri, params)
    parts = urlsplit(redirect_uri)
    encoded = urlencode(params)
    if mode == "fragment":
        url = urlunsplit((*parts[:4], encoded))
    else:
        query = f"{parts.query}&{encoded}" if parts.query else encoded
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return RedirectResponse(url, status_code=302)


def form_post_page(redirect_uri: str, params: dict[str, str]) -> HTMLResponse:
    """``response_mode=form_post``: a page whose form posts ``params`` to the client at once."""
    fields = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in params.items())
    return HTMLResponse(
        f'<!doctype html><html><body onload="document.forms[0].submit()">'
        f'<form method="post" action="{escape(redirect_uri)}">{fields}</form></body></html>'
    )


def _without_port(uri: str) -> tuple[str, str, str, str]:
    parts = urlsplit(uri)
    return parts.scheme, (parts.hostname or "").lower(), parts.path or "/", parts.query


def redirect_uri_allowed(uri: str, registered: tuple[str, ...]) -> bool:
    """Whether the client may be sent back to ``uri``.

    Registered URIs match exactly, except that a loopback one matches on any port (Google's installed
    apps and Entra's "localhost exceptions"). Without registered URIs any loopback http URI and any
    https URI are accepted, so tests need no setup.
    """
    try:
        parts = urlsplit(uri)
        _ = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        return False
    loopback = is_loopback(parts.hostname)
    if not registered:
        return parts.scheme == "https" or loopback
    if uri in registered:
        return True
    return loopback and any(
        is_loopback(urlsplit(r).hostname or "") and _without_port(r) == _without_port(uri) for r in registered
    )
