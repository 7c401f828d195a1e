"""Shared fixtures: real emulators over loopback HTTP, real SQLite stores."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from calsync.emulators.google import GoogleEmulator, create_app
from calsync.emulators.server import RunningServer, serve_in_thread


@pytest.fixture(scope="session")
def google_server() -> Iterator[RunningServer]:
    """One Google Calendar emulator per test session, on a free loopback port."""
    server = serve_in_thread(create_app(GoogleEmulator()))
    yield server
    server.stop()


@pytest.fixture()
def google_url(google_server: RunningServer) -> str:
    """Base URL of a freshly reset Google emulator (state, faults and request log cleared)."""
    httpx.post(f"{google_server.url}/emulator/reset").raise_for_status()
    return google_server.url


@pytest.fixture(scope="session")
def zoom_server() -> Iterator[RunningServer]:
    """One Zoom-compatible emulator per test session."""
    from calsync.emulators.zoom import ZoomEmulator
    from calsync.emulators.zoom import create_app as create_zoom_app

    server = serve_in_thread(create_zoom_app(ZoomEmulator()))
    yield server
    server.stop()


@pytest.fixture()
def zoom_url(zoom_server: RunningServer) -> str:
    httpx.post(f"{zoom_server.url}/emulator/reset").raise_for_status()
    return zoom_server.url
