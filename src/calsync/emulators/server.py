"""Run an ASGI app with uvicorn on loopback, in a background thread or in the foreground.

Tests and benchmarks need real HTTP (the official client libraries speak it), so
emulators are served by a real uvicorn server rather than an in-process transport.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

_START_TIMEOUT_S = 10.0


class RunningServer:
    """Handle on a uvicorn server running in a daemon thread."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int, scheme: str = "http"
    ) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port: int = port
        shown = f"[{host}]" if ":" in host else host
        self.url: str = f"{scheme}://{shown}:{port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to shut down and wait for the thread to finish."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __repr__(self) -> str:
        return f"RunningServer(url={self.url!r})"


def _config(app: Any, host: str, port: int, certfile: str | None = None, keyfile: str | None = None) -> uvicorn.Config:
    """Quiet uvicorn settings: the emulators' own request log is the record, not access logs; TLS when
    given a certificate (MSAL wants an https authority)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        timeout_keep_alive=30,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket here so port 0 yields a known free port before uvicorn starts.

    The protocol must be IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted
    sockets whose proto says TCP, and without it keep-alive requests stall ~40 ms on Nagle.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _wait_until_accepting(server: uvicorn.Server, thread: threading.Thread, host: str, port: int) -> None:
    """Block until uvicorn reports started and a TCP connect succeeds, so callers can use the URL at once."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("emulator server thread exited during start-up")
        if server.started:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                pass
        time.sleep(0.01)
    server.should_exit = True
    raise RuntimeError(f"emulator server on {host}:{port} did not start within {_START_TIMEOUT_S}s")


def serve_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, certfile: str | None = None, keyfile: str | None = None
) -> RunningServer:
    """Serve ``app`` in a daemon thread; ``port=0`` picks a free port; https with ``certfile``/``keyfile``.
    Returns once connections are accepted."""
    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, host, actual_port, certfile, keyfile))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"emulator-{actual_port}", daemon=True
    )
    thread.start()
    _wait_until_accepting(server, thread, host, actual_port)
    return RunningServer(server, thread, host, actual_port, "https" if certfile else "http")


class _Server(uvicorn.Server):
    """uvicorn's server, telling `on_exit` (in a thread of its own: this runs in a signal handler) as
    soon as a signal asks it to stop, before it waits for the requests in flight: long polls answer
    at once instead of holding the shutdown for their whole wait."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._on_exit is not None and not self.should_exit:
            threading.Thread(target=self._on_exit, name="server-exit", daemon=True).start()
        super().handle_exit(sig, frame)


def serve_forever(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8765,
    sock: socket.socket | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    on_exit: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` in the foreground until interrupted (``calsync emulator ...``, ``calsync serve``);
    on ``sock`` when the caller bound it already (to learn the port of port 0 first); https with a certificate.
    ``on_exit`` is called (in a thread) when a signal asks the server to stop."""
    server = _Server(_config(app, host, sock.getsockname()[1] if sock else port, certfile, keyfile), on_exit)
    server.run(sockets=[sock] if sock else None)
