"""Servers the tests start on 127.0.0.1: a free port, moto's server for S3 and SageMaker, and a
stand-in for Airflow's API server."""

from __future__ import annotations

import json
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
from recflow.stack.ports import free_port

__all__ = ["JsonHandler", "airflow_stand_in", "free_port", "moto_server"]


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
