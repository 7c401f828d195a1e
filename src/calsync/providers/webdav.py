"""WebDAV (RFC 4918) and CalDAV (RFC 4791) answers read with xml.etree: a DAV:multistatus as its
responses (found and missing properties by tag), and the properties calsync reads from a collection
(calendar or not, VEVENT or not, its name, time zone, access). No I/O here: providers/caldav.py asks.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from calsync.providers.base import ProviderError

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
APPLE = "http://apple.com/ns/ical/"
CS = "http://calendarserver.org/ns/"


def _t(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


@dataclass
class _Response:
    """One DAV:response of a multistatus."""

    href: str
    status: int | None = None
    props: dict[str, ET.Element] = field(default_factory=dict)  # properties found (2xx propstat)
    missing: dict[str, int] = field(default_factory=dict)  # properties with a non-2xx propstat


def _status_code(text: str | None) -> int | None:
    parts = (text or "").split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def _multistatus(content: bytes) -> tuple[list[_Response], str | None]:
    """The responses of a DAV:multistatus, and its DAV:sync-token if any."""
    try:
        # (the server's own answer; ElementTree fetches no external entity, and the bundled expat
        # (>= 2.4.1) refuses entity-expansion bombs)
        root = ET.fromstring(content)  # noqa: S314
    except ET.ParseError as exc:
        raise ProviderError(f"unreadable DAV answer: {exc}") from exc
    token_element = root.find(_t(DAV, "sync-token"))
    token = token_element.text.strip() if token_element is not None and token_element.text else None
    out: list[_Response] = []
    for element in root.findall(_t(DAV, "response")):
        href = element.findtext(_t(DAV, "href")) or ""
        item = _Response(href=href.strip(), status=_status_code(element.findtext(_t(DAV, "status"))))
        for propstat in element.findall(_t(DAV, "propstat")):
            status = _status_code(propstat.findtext(_t(DAV, "status"))) or 200
            prop = propstat.find(_t(DAV, "prop"))
            for child in list(prop) if prop is not None else []:
                if 200 <= status < 300:
                    item.props[child.tag] = child
                else:
                    item.missing[child.tag] = status
        out.append(item)
    return out, token


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    text = element.text or "" if len(element) == 0 else "".join(element.itertext())  # (no copy of calendar-data)
    return text if text and not text.isspace() else None


def _hrefs(element: ET.Element | None) -> list[str]:
    if element is None:
        return []
    return [h.text.strip() for h in element.iter(_t(DAV, "href")) if h.text and h.text.strip()]


def _is_calendar(response: _Response) -> bool:
    kind = response.props.get(_t(DAV, "resourcetype"))
    return kind is not None and kind.find(_t(CALDAV, "calendar")) is not None


def _takes_events(response: _Response) -> bool:
    components = response.props.get(_t(CALDAV, "supported-calendar-component-set"))
    if components is None:
        return True  # not stated: any component (RFC 4791 5.2.3)
    return any((c.get("name") or "").upper() == "VEVENT" for c in components.iter(_t(CALDAV, "comp")))


def _tzid(vtimezone: str | None) -> str | None:
    if not vtimezone:
        return None
    for line in vtimezone.splitlines():
        if line.upper().startswith("TZID:"):
            return line[5:].strip() or None
    return None


def _access_role(privileges: ET.Element | None) -> str | None:
    if privileges is None:
        return None
    names = {child.tag for privilege in privileges.iter(_t(DAV, "privilege")) for child in privilege}
    if _t(DAV, "all") in names or _t(DAV, "write") in names or _t(DAV, "write-content") in names:
        return "writer"
    if _t(DAV, "read") in names:
        return "reader"
    return None
