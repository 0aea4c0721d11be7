"""Servers the tests start on 127.0.0.1: a free port, moto's server for S3 and SageMaker, and a
stand-in for Airflow's API server."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from recflow.stack.api import AirflowClient


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice, from its ephemeral range): for one server
    bound at once. A server that needs the ports after it takes ``free_port_block``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FIXED_PORTS_BELOW = 20000
"""tests/conftest.py's per-worker Airflow ports (18080 on) and the stack's defaults lie below this."""


def _ephemeral() -> range:
    """The ports the kernel hands out for outgoing connections and ``bind(port=0)``: any process may
    take one of them at any moment, so a block picked there can be lost before its server binds it."""
    try:
        low, high = (int(x) for x in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(size: int = 4) -> int:
    """The first of ``size`` consecutive ports nothing listens on (the embedded API port takes the
    three after it), drawn at random between the fixed ports and the kernel's ephemeral range: a port
    the kernel picked (``free_port``) leaves the ports after it to the next outgoing connection."""
    ephemeral = _ephemeral()
    below, above = range(FIXED_PORTS_BELOW, ephemeral.start), range(ephemeral.stop, 65536)
    ports = max(below, above, key=len)
    for _ in range(200):
        base = random.randrange(ports.start, ports.stop - size)
        if all(_bindable(base + i) for i in range(size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports in {ports.start}-{ports.stop - 1}")


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's plain server on a free port (its URL), stopped on exit."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and logs nothing; a test's subclass says what it answers."""

    def send_json(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def airflow_stand_in(handler: type[BaseHTTPRequestHandler]) -> Iterator[AirflowClient]:
    """``handler`` served on a free port in place of Airflow's API server, and a client of it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield AirflowClient(f"http://127.0.0.1:{server.server_address[1]}", token="t", retry_pause=0.01)
    finally:
        server.shutdown()
