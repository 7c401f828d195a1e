"""Which URLs a webhook may be sent to, so the service cannot be turned against internal addresses.

A URL must be https, its host must resolve, and every address it resolves to must be public: not
private, loopback, link-local (169.254.169.254, a cloud's metadata service, is link-local),
unspecified, multicast or reserved (an IPv4 address inside IPv6, ::ffff:10.0.0.1, counts as the IPv4
one). No user name or password in the URL.

Development and tests only: CALSYNC_ALLOW_LOOPBACK_WEBHOOKS=1 in the service's environment also allows
loopback addresses, and plain http to them (http://127.0.0.1:8080/hook). Never set it where others
can create subscriptions: loopback reaches everything listening on the service's own machine.

The check runs when a subscription is made and again before every attempt, and the attempt connects
to the address that check approved (`Target.url`, with the name kept in the Host header and in TLS's
SNI and certificate check), so a name that resolves elsewhere later (DNS rebinding) reaches nothing
internal. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import httpx

ALLOW_LOOPBACK_ENV = "CALSYNC_ALLOW_LOOPBACK_WEBHOOKS"
MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT = 3.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="calsync-webhook-dns")


class RefusedUrl(ValueError):
    """A URL a webhook may not go to; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: `url` names the approved address; `host` is the Host header;
    `sni` the name TLS asks for and checks the certificate against (None for an address URL)."""

    url: str
    host: str
    sni: str | None


def loopback_allowed() -> bool:
    return os.environ.get(ALLOW_LOOPBACK_ENV, "").strip() == "1"


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast and not address.is_reserved


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    future = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=RESOLVE_TIMEOUT)
    except FutureTimeout:
        raise RefusedUrl(f"the host {host!r} did not resolve within {RESOLVE_TIMEOUT:.0f} s") from None
    except (OSError, UnicodeError) as exc:
        raise RefusedUrl(f"the host {host!r} does not resolve ({exc})") from None
    found: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # an IPv6 scope id
        address = ipaddress.ip_address(text)
        if address not in found:
            found.append(address)
    if not found:
        raise RefusedUrl(f"the host {host!r} does not resolve")
    return found


def check(url: str, allow_loopback: bool | None = None) -> Target:
    """The target of a URL a webhook may go to, or RefusedUrl. Resolves the host (a name lookup, at
    most RESOLVE_TIMEOUT seconds)."""
    loopback = loopback_allowed() if allow_loopback is None else allow_loopback
    if len(url) > MAX_URL_LENGTH:
        raise RefusedUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise RefusedUrl(f"not a URL ({exc})") from None
    if parsed.scheme not in ("https", "http"):
        raise RefusedUrl("the URL must be https")
    if parsed.scheme == "http" and not loopback:
        raise RefusedUrl(f"the URL must be https (http only to loopback, with {ALLOW_LOOPBACK_ENV}=1 in development)")
    if parsed.userinfo:
        raise RefusedUrl("the URL must not carry a user name or password")
    host = parsed.host
    if not host:
        raise RefusedUrl("the URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = _resolve(host, port)
    for address in addresses:
        if loopback and address.is_loopback:
            continue
        if parsed.scheme == "http":
            raise RefusedUrl(f"http is allowed to loopback only, and {host} is {address}")
        if not _public(address):
            raise RefusedUrl(f"{host} is {address}, which is not a public address")
    chosen = addresses[0]
    is_name = str(chosen) != host
    host_header = host if parsed.port is None else f"{host}:{parsed.port}"
    if ":" in host and parsed.port is None:
        host_header = f"[{host}]"
    elif ":" in host:
        host_header = f"[{host}]:{parsed.port}"
    return Target(
        url=str(parsed.copy_with(host=str(chosen))),
        host=host_header,
        sni=host if is_name and parsed.scheme == "https" else None,
    )
