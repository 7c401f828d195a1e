"""Outbound webhook delivery throughput: changes fanned out from the change journal and POSTed, signed,
to a receiver on loopback.

One user, one calendar, --count local events created (one journal row each), one subscription to a
receiver in its own process (http.server, threaded, answering 204 at once: what is measured is calsync's
side). Then the delivery worker (calsync/hooks/delivery.py, --concurrency requests in flight) runs
until every delivery is recorded delivered; prints the fan-out time, deliveries/s of the whole
(fan-out + claims + signing + POST + recording) and the same for --workers workers sharing the
database at once (their leases keep them off each other's rows; a fresh batch of changes).

    python bench/webhooks.py [--count 2000] [--concurrency 4] [--workers 2] [--db URL]

`--db` names an empty database (default: a SQLite file in a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select

from calsync.engine import local, setup
from calsync.hooks import signing, urls
from calsync.hooks.delivery import Deliverer, DeliverySettings
from calsync.store import hooks as hook_store
from calsync.store import users
from calsync.store.db import open_engine
from calsync.store.schema import webhook_deliveries


def serve_receiver(port_file: str) -> None:
    """The receiver process: 204 to every POST; writes its port, then serves until killed."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver behind a proxy would

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def start_receiver(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = folder / "receiver.port"
    process = subprocess.Popen([sys.executable, __file__, "--serve-receiver", str(port_file)])
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the receiver did not start")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port_file.read_text()}/hook"
    httpx.get(url, timeout=5)
    return process, url


def make_changes(engine: Engine, calendar: str, count: int, tag: str) -> None:
    for n in range(count):
        local.create_event(
            engine, calendar, {"title": f"{tag} {n}", "start": "2027-01-04T09:00:00Z", "end": "2027-01-04T09:30:00Z"}
        )


def delivered(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(webhook_deliveries).where(webhook_deliveries.c.status == "delivered")
        return int(conn.execute(query).scalar_one())


def run(engine: Engine, workers: int, settings: DeliverySettings, target: int) -> tuple[float, float]:
    """(seconds of the first fan-out, seconds until `target` deliveries are delivered), `workers` at once."""
    deliverers = [Deliverer(engine, settings) for _ in range(workers)]
    started = time.perf_counter()
    fanned = deliverers[0].fan_out()
    fan_out_seconds = time.perf_counter() - started
    assert fanned > 0, "nothing was fanned out"
    stop = threading.Event()

    def loop(deliverer: Deliverer) -> None:
        deliverer.run_forever(stop)  # the service's loop: slots refilled as requests finish

    threads = [threading.Thread(target=loop, args=(d,), daemon=True) for d in deliverers]
    for thread in threads:
        thread.start()
    while delivered(engine) < target:
        time.sleep(0.01)
    took = time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join(30)
    for deliverer in deliverers:
        deliverer.close()
    return fan_out_seconds, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per worker")
    parser.add_argument("--workers", type=int, default=2, help="workers at once in the second round")
    parser.add_argument("--db", default=None)
    parser.add_argument("--serve-receiver", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
        return
    os.environ[urls.ALLOW_LOOPBACK_ENV] = "1"  # the receiver is on loopback (development switch)
    with tempfile.TemporaryDirectory(prefix="calsync-bench-webhooks-") as folder:
        receiver, url = start_receiver(Path(folder))
        try:
            engine = open_engine(args.db or f"sqlite:///{folder}/calsync.db")
            calendar = setup.add_calendar(engine, "Bench")
            with engine.begin() as conn:
                hook_store.create_subscription(
                    conn, users.default_owner(conn), url, ["created"], None, signing.new_secret()
                )
            settings = DeliverySettings(concurrency=args.concurrency, batch=50)
            print(
                f"backend: {engine.dialect.name}; {args.count} changes per round; "
                f"{args.concurrency} requests in flight per worker; receiver: {url} (own process)"
            )
            for round_, workers in enumerate((1, args.workers)):
                make_changes(engine, calendar, args.count, f"r{round_}")
                fan_out, took = run(engine, workers, settings, args.count * (round_ + 1))
                print(
                    f"{workers} worker(s): fan-out {args.count / fan_out:,.0f} changes/s ({fan_out:.2f} s); "
                    f"delivered {args.count} in {took:.2f} s = {args.count / took:,.0f} deliveries/s"
                )
            engine.dispose()
        finally:
            receiver.terminate()
            receiver.wait(10)


if __name__ == "__main__":
    main()
