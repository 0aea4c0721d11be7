"""The embedded Airflow refuses to start on a taken port, and says which one and what to do."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from recflow import cli
from recflow.core.errors import ConfigError
from recflow.stack.ports import free_port, free_port_block
from recflow.stack.runtime import API_HOST
from recflow.stack.services import LISTENING_PORTS, check_ports_free


@pytest.fixture
def listening() -> Iterator[int]:
    """A port with a real listener on it, as an orphaned API server would leave."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((API_HOST, 0))
        server.listen()
        yield int(server.getsockname()[1])


def _env(api: int, *others: int) -> dict[str, str]:
    ports = (api, *others) if others else (api, *(free_port() for _ in LISTENING_PORTS[1:]))
    return {var: str(port) for (var, _), port in zip(LISTENING_PORTS, ports, strict=True)}


def test_free_ports_pass() -> None:
    check_ports_free(_env(free_port()))


def test_a_taken_port_is_named_with_its_role_and_the_setting_that_moves_it(listening: int) -> None:
    with pytest.raises(ConfigError) as refused:
        check_ports_free(_env(listening))
    message = str(refused.value)
    assert f"port {listening} (API server and UI)" in message
    assert "RECFLOW_AIRFLOW_API_PORT" in message
    assert "recflow down" in message


def test_the_cli_prints_the_refusal_without_a_traceback(
    listening: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("RECFLOW_AIRFLOW_API_PORT", str(listening))
    assert cli.main(["up"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"recflow: cannot start Airflow: port {listening} (API server and UI)")
    assert "Traceback" not in err


def test_a_port_block_lies_outside_the_kernels_ephemeral_range_and_binds() -> None:
    """The ports the kernel hands to outgoing connections, read from /proc, never hold a block: one
    of them could be taken between the draw and the server's bind (a CI run lost 58054 so)."""
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(20):
        base = free_port_block(4)
        block = range(base, base + 4)
        assert not set(block) & set(range(low, high + 1))
        servers = [socket.create_server((API_HOST, port)) for port in block]
        for server in servers:
            server.close()


def test_a_port_block_is_found_when_the_ephemeral_range_leaves_no_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine tuned to hand out every port (1024-65535) left both ranges empty: randrange raised."""
    from recflow.stack import ports

    wide = tmp_path / "ip_local_port_range"
    wide.write_text("1024\t65535\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", wide)
    base = free_port_block(4)
    servers = [socket.create_server((API_HOST, port)) for port in range(base, base + 4)]
    for server in servers:
        server.close()
