"""Whether a server of ours could listen on a port: checked before starting one, so a taken port is a
one-line error naming the setting rather than a process that dies (or binds elsewhere) with only its
log saying why."""

from __future__ import annotations

import socket


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails, as a server binds it: a port a stopped server left in
    TIME_WAIT is free, a listening one is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False
