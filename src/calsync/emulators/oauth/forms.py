"""Reading token-endpoint requests: the urlencoded form, and client credentials from the form or from
HTTP Basic (RFC 6749 2.3.1; both providers accept either)."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request

__all__ = ["client_credentials", "read_form"]


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body (first value of each name), plus query parameters the body does not name."""
    raw = await request.body()
    form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    for key, value in request.query_params.items():
        form.setdefault(key, value)
    return form


def client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """(client_id, client_secret): HTTP Basic when sent, else the form's fields."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        cid, _, secret = decoded.partition(":")
        return unquote(cid) or None, unquote(secret) or None
    return form.get("client_id") or None, form.get("client_secret") or None
