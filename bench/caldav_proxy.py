"""A counting reverse proxy on loopback, so both sync tools' HTTP requests are counted the same way.

A threaded http.server (HTTP/1.1 keep-alive towards the client) forwarding each request to the
server over one upstream connection per client connection. Answers are buffered and sent with a
Content-Length: the proxy adds a little latency per request, equally for both tools. Both of its
sockets are TCP_NODELAY and each answer leaves in one write: with Nagle's algorithm, the second
write of a message (a body after its headers) waited for the peer's delayed ACK, up to 40 ms per
request or answer, which no real client or server adds.
"""
from __future__ import annotations

import http.client
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up mid-answer (vdirsyncer aborting on an error) is not worth a traceback."""

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class CountingProxy:
    """Forwards http://127.0.0.1:<port>/... to `upstream_port`, counting requests by method."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.counts: Counter[str] = Counter()
        self.bytes_in = 0  # answer bytes sent to clients
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                return

            def _upstream(self) -> http.client.HTTPConnection:
                conn = getattr(self, "_conn", None)
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=600)
                    conn.connect()
                    # http.client sends a request's headers and body in two writes: on a kept-alive
                    # connection Nagle held the body until the server's delayed ACK (40 ms)
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._conn = conn
                return conn

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                with proxy._lock:
                    proxy.counts[self.command] += 1
                for attempt in (1, 2):  # a kept-alive upstream connection may have been closed
                    conn = self._upstream()
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        answer = conn.getresponse()
                        data = answer.read()
                        break
                    except (http.client.HTTPException, ConnectionError, OSError):
                        conn.close()
                        self._conn = None
                        if attempt == 2:
                            raise
                self.send_response_only(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self._headers_buffer.append(b"\r\n")  # end_headers() would write them on their own
                head = b"".join(self._headers_buffer)
                self._headers_buffer = []
                self.wfile.write(head + data if self.command != "HEAD" else head)
                with proxy._lock:
                    proxy.bytes_in += len(data)
                if answer.will_close:
                    conn.close()
                    self._conn = None

            do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = do_OPTIONS = _forward
            do_PROPFIND = do_REPORT = do_PROPPATCH = do_MKCALENDAR = do_MKCOL = _forward

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, name="counting-proxy", daemon=True)
        self._thread.start()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.bytes_in = 0

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
