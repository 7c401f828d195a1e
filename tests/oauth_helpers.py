"""Following an emulated consent page over plain HTTP, as a browser would: GET the authorization URL,
POST its form with the chosen button, read where the answer redirects."""

from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_FORM = re.compile(r'<form method="post" action="([^"]+)">')


def consent_form(auth_url: str, verify: Any = True) -> tuple[str, dict[str, str], str]:
    """The consent page's form: (absolute action URL, hidden fields, the page's HTML)."""
    page = httpx.get(auth_url, verify=verify, follow_redirects=False)
    assert page.status_code == 200, (page.status_code, page.text)
    action = _FORM.search(page.text)
    assert action is not None, page.text
    fields = {unescape(k): unescape(v) for k, v in _INPUT.findall(page.text)}
    return urljoin(auth_url, unescape(action.group(1))), fields, page.text


def answer_consent(auth_url: str, decision: str = "allow", verify: Any = True) -> str:
    """Press Allow (or Deny) on the consent page; returns the redirect URL the provider answered."""
    action, fields, _ = consent_form(auth_url, verify)
    answer = httpx.post(action, data={**fields, "decision": decision}, verify=verify, follow_redirects=False)
    assert answer.status_code == 302, (answer.status_code, answer.text)
    return answer.headers["location"]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
