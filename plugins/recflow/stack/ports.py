"""Whether a server of ours could listen on a port: checked before starting one, so a taken port is a
one-line error naming the setting rather than a process that dies (or binds elsewhere) with only its
log saying why."""

from __future__ import annotations

import socket


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
