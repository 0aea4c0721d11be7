"""Whether a server of ours could listen on a port: checked before starting one, so a taken port is a
one-line error naming the setting rather than a process that dies (or binds elsewhere) with only its
log saying why."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails, as a server binds it: a port a stopped server left in
    TIME_WAIT is free, a listening one is not."""
    return bind_refusal(host, port) is not None


def bind_refusal(host: str, port: int) -> str | None:
    """Why a server could not bind ``host:port`` (a host that names no address of this machine, a port
    another server holds), as the system says it; ``None`` when it could."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FIXED_PORTS_BELOW = 20000
"""The stack's default ports (8080 on) and the test suite's per-worker Airflow ports (18080 on) lie below this."""


def _ephemeral() -> range:
    """The ports the kernel hands out for outgoing connections and ``bind(port=0)``: any process may
    take one of them at any moment, so a block picked there can be lost before its server binds it."""
    try:
        low, high = (int(x) for x in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port_block(size: int = 4) -> int:
    """The first of ``size`` consecutive ports nothing listens on, for the tests' and benchmarks' own
    servers (an embedded API port takes the three after it), drawn at random between the fixed ports
    and the kernel's ephemeral range: a port the kernel picked for ``bind(0)`` leaves the ports after
    it to the next outgoing connection."""
    ephemeral = _ephemeral()
    below, above = range(FIXED_PORTS_BELOW, ephemeral.start), range(ephemeral.stop, 65536)
    ports = max(below, above, key=len)
    draw = random.Random()  # not the global generator, which a benchmark seeds
    for _ in range(200):
        # an ephemeral range that leaves no room (tuned to 1024-65535, say): the kernel's pick, racy as it is
        base = draw.randrange(ports.start, ports.stop - size + 1) if len(ports) >= size else free_port()
        if base + size <= 65536 and not any(port_in_use("127.0.0.1", base + i) for i in range(size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports on 127.0.0.1")


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick, from its ephemeral range): for one server bound
    at once; a server that takes the ports after it needs :func:`free_port_block`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
