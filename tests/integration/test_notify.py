"""The failure callback end to end: incident stored, ON-CALL line, notification through Apprise.

The notification goes to a ``json://`` Apprise target served by a tiny HTTP server on
the loopback interface, configured only by the connection ``AIRFLOW_CONN_RECFLOW_ALERTS``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from recflow.airflow.alerts import failure_from_context, notify, on_task_failure
from recflow.core.config import Settings
from recflow.core.errors import ConfigError, PartitionRefused
from recflow.oncall.store import IncidentStore

pytestmark = pytest.mark.integration

CONN_VAR = "AIRFLOW_CONN_RECFLOW_ALERTS"


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[dict[str, Any]] = []
        self.arrived = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.received.append(json.loads(self.rfile.read(length)))
        self.server.arrived.set()
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def home(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RECFLOW_HOME", str(settings.home))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.delenv(CONN_VAR, raising=False)
    monkeypatch.delenv("RECFLOW_ALERTS_CONN_ID", raising=False)
    return settings


def _context(error: BaseException | None = None) -> dict[str, Any]:
    error = error or PartitionRefused(
        "partition ds=2026-01-03 refused: 2.40% of rows quarantined",
        check="quarantine_share",
        columns=["event_type"],
        observed="2.40%",
        expected="at most 1.00%",
        evidence="select * from quality.quarantine_events where ds = '2026-01-03'",
    )
    return {
        "ti": SimpleNamespace(
            dag_id="recsys_warehouse",
            task_id="audit",
            run_id="scheduled__2026-01-03T00:00:00+00:00",
            try_number=1,
        ),
        "params": {"max_quarantine_share": 0.01, "reload_from": None, "reload_to": None},
        "logical_date": datetime(2026, 1, 3, tzinfo=UTC),
        "data_interval_start": datetime(2026, 1, 3, tzinfo=UTC),
        "data_interval_end": datetime(2026, 1, 4, tzinfo=UTC),
        "exception": error,
    }


def test_the_context_is_unpacked() -> None:
    failure = failure_from_context(_context())
    assert (failure.dag_id, failure.task_id, failure.try_number) == ("recsys_warehouse", "audit", 1)
    assert failure.day is not None and failure.day.isoformat() == "2026-01-03"
    assert isinstance(failure.error, PartitionRefused)


def test_a_failure_is_stored_logged_and_sent(
    home: Settings, receiver: _Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    target = f"json://127.0.0.1:{receiver.server_port}/"
    monkeypatch.setenv(CONN_VAR, json.dumps({"conn_type": "apprise", "extra": {"config": {"path": target}}}))
    with caplog.at_level(logging.INFO, logger="recflow"):
        on_task_failure(_context())
    assert receiver.arrived.wait(10), "nothing arrived at the json:// target"
    [message] = receiver.received
    assert message["title"] == "[recflow] recsys_warehouse.audit failed"
    assert message["type"] == "failure"
    body = message["message"].splitlines()
    assert body[0] == "PartitionRefused: partition ds=2026-01-03 refused: 2.40% of rows quarantined"
    assert body[1].startswith("What to do: look at the refused rows")
    assert "where ds = '2026-01-03'" in body[1]
    assert body[2] == "Runbook: docs/runbooks/recsys_warehouse.md#partition-refused"
    assert body[3] == "Incident: 1 (recflow incidents show 1)"
    [incident] = IncidentStore(home.incidents_path).find()
    assert (incident.id, incident.kind, incident.check) == (1, "data", "quarantine_share")
    on_call = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ON-CALL: ")]
    assert len(on_call) == 1 and on_call[0].endswith("| incident: 1 (recflow incidents show 1)")


def test_without_the_connection_nothing_is_sent_and_nothing_fails(
    home: Settings, receiver: _Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="recflow"):
        on_task_failure(_context())
    assert not receiver.arrived.wait(0.5)
    assert len(IncidentStore(home.incidents_path).find()) == 1
    assert any("no Airflow connection 'recflow_alerts'" in r.getMessage() for r in caplog.records)
    [incident] = IncidentStore(home.incidents_path).find()
    assert notify(incident, "recflow_alerts") is False


def test_a_broken_connection_or_context_never_raises(
    home: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(CONN_VAR, json.dumps({"conn_type": "apprise", "extra": {"no_config": True}}))
    with caplog.at_level(logging.INFO, logger="recflow"):
        on_task_failure(_context())
        on_task_failure({})
    assert len(IncidentStore(home.incidents_path).find()) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("the notification through 'recflow_alerts' failed" in m for m in messages)
    assert any("could not build the incident" in m for m in messages)


def test_a_refused_setting_is_recorded_and_sent_like_any_failure(
    home: Settings, receiver: _Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """RECFLOW_GATE_RANKING=Full on the workers: every task fails on it, and so did the callback's own
    read of the settings, which logged 'could not build the incident' and recorded and sent nothing."""
    target = f"json://127.0.0.1:{receiver.server_port}/"
    monkeypatch.setenv(CONN_VAR, json.dumps({"conn_type": "apprise", "extra": {"config": {"path": target}}}))
    monkeypatch.setenv("RECFLOW_GATE_RANKING", "Full")
    with pytest.raises(ConfigError) as refused:
        Settings.from_env()
    assert refused.value.invalid == ("RECFLOW_GATE_RANKING",)
    with caplog.at_level(logging.INFO, logger="recflow"):
        on_task_failure(_context(refused.value))
    [incident] = IncidentStore(home.incidents_path).find()
    assert (
        incident.kind == "pipeline"
        and "RECFLOW_GATE_RANKING='Full' is not one of full, sampled" in incident.message
    )
    assert receiver.arrived.wait(10), "nothing arrived at the json:// target"
    assert receiver.received[0]["title"] == "[recflow] recsys_warehouse.audit failed"
    assert "#configuration" in receiver.received[0]["message"]
    messages = [r.getMessage() for r in caplog.records]
    assert not any("could not build the incident" in m for m in messages)
    assert any(m.startswith("ON-CALL: ") for m in messages)


def test_the_champion_comes_from_the_real_registry(settings: Settings) -> None:
    from recflow.oncall.incidents import champion_of
    from recflow.registry import MlflowRegistry

    MlflowRegistry(settings).client.search_registered_models()  # creates the empty SQLite registry
    assert champion_of(settings, "recsys-demo") == "none: recsys-demo has no champion"


def test_a_corrupt_registry_makes_the_champion_unknown(settings: Settings) -> None:
    from recflow.oncall.incidents import champion_of

    db = Path(settings.mlflow_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    assert champion_of(settings, "recsys-demo").startswith("unknown: the registry could not be read (")


def test_the_incident_names_the_asset_the_warehouse_updates() -> None:
    from recflow.airflow.assets import TRAINING_MART
    from recflow.core.names import TRAINING_ASSET

    assert TRAINING_MART.name == TRAINING_ASSET


LOST = "Database Error\n  failed to connect: TTransportException: TSocket read 0 bytes"
"""What dbt-spark 1.11 said for each model after its Thrift server was killed mid-build."""
RUN = "scheduled__2026-01-03T00:00:00+00:00"


def _node_failure(*results: tuple[str, str]) -> BaseException:
    """The error the real node task raises for its nodes' results (a model, then its tests), each
    ``(status, message)`` as dbt reported it, read back from the record the build pushes."""
    from recflow.airflow.dbt import DbtNodeOperator, _record_parts
    from recflow.transform import NodeResult, verdict

    nodes = ("model.recflow.node_0", *(f"test.recflow.test_{i}" for i in range(1, len(results))))
    task = DbtNodeOperator(
        task_id="node_0_model_build",
        nodes=nodes,
        node_name="node_0",
        node_kind="model",
        build_task_id="transform.dbt_build",
        node_task_id="node_0_model_build",
    )
    pushed = {
        "started": list(nodes),
        "results": {
            uid: NodeResult(uid, status, message, 0.1).as_dict()
            for uid, (status, message) in zip(nodes, results, strict=True)
        },
    }
    found, started = _record_parts(json.loads(json.dumps(pushed)))  # as XCom hands it back
    return task._error(verdict(nodes, found, started))


def _task_context(task_id: str, error: BaseException, try_number: int = 1) -> dict[str, Any]:
    context = _context(error)
    context["ti"] = SimpleNamespace(
        dag_id="recsys_warehouse", task_id=task_id, run_id=RUN, try_number=try_number
    )
    return context


def _build_lost() -> dict[str, Any]:
    from recflow.core.errors import WarehouseUnavailable

    return _task_context(
        "transform.dbt_build",
        WarehouseUnavailable("dbt lost the warehouse during the build: 2 node(s) could not reach it"),
        try_number=2,
    )


NODE = "transform.node_0_model_build"
LOST_MODEL = (("error", LOST),)


@pytest.fixture
def sent(home: Settings, receiver: _Receiver, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the alerts connection received: each notification's title, in order."""
    target = f"json://127.0.0.1:{receiver.server_port}/"
    monkeypatch.setenv(CONN_VAR, json.dumps({"conn_type": "apprise", "extra": {"config": {"path": target}}}))
    return receiver.received


def _on_call_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("ON-CALL: ")]


def test_one_lost_warehouse_pages_once_not_once_per_dbt_node(
    home: Settings, sent: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """On the Spark walk a killed Thrift server failed every node dbt had left, and each node's task paged
    beside the build. The build fails for it (WarehouseUnavailable) and its incident is sent; a node task
    whose nodes all lost the warehouse then records its incident and writes its line, naming the build's
    incident, and sends nothing."""
    on_task_failure(_build_lost())  # its process ends, then the node tasks see it failed
    with caplog.at_level(logging.INFO, logger="recflow"):
        on_task_failure(_task_context(NODE, _node_failure(*LOST_MODEL)))
    assert [m["title"] for m in sent] == ["[recflow] recsys_warehouse.transform.dbt_build failed"]
    build, node = IncidentStore(home.incidents_path).find()
    assert (node.task_id, node.kind) == (NODE, "infrastructure")
    *_, line = _on_call_lines(caplog)  # the build's, then the node's
    assert line.endswith(
        f"| incident: {node.id} (recflow incidents show {node.id}) | not sent: transform.dbt_build failed for "
        f"the same cause in this run: its incident {build.id} (recflow incidents show {build.id}) is the page "
        "for both"
    ), line


def test_a_node_pages_when_the_build_left_no_incident_of_its_own(
    home: Settings, sent: list[dict[str, Any]]
) -> None:
    """A build whose callback never stored its incident (killed, or its store down) pages nobody: the node
    that lost the warehouse then pages itself. So does one failing again after a clear whose build's
    incident is the earlier failure's."""
    on_task_failure(_task_context(NODE, _node_failure(*LOST_MODEL)))
    assert [m["title"] for m in sent] == [f"[recflow] recsys_warehouse.{NODE} failed"]
    on_task_failure(_build_lost())
    on_task_failure(_task_context(NODE, _node_failure(*LOST_MODEL)))  # covered by that build's incident
    on_task_failure(_task_context(NODE, _node_failure(*LOST_MODEL), try_number=2))  # after a clear
    assert [m["title"] for m in sent] == [
        f"[recflow] recsys_warehouse.{NODE} failed",
        "[recflow] recsys_warehouse.transform.dbt_build failed",
        f"[recflow] recsys_warehouse.{NODE} failed",
    ]
    assert len(IncidentStore(home.incidents_path).find()) == 4


@pytest.mark.parametrize(
    "results",
    [
        (
            (
                "error",
                "Runtime Error in model node_0\n  [UNRESOLVED_COLUMN] A column `wieght` cannot be resolved",
            ),
        ),
        # one of the model's tests failed on its data beside one that lost the warehouse: the data's verdict
        (("success", ""), ("error", LOST), ("fail", "Got 3 results, configured to fail if != 0")),
    ],
    ids=["its-sql", "its-data-beside-a-lost-test"],
)
def test_a_node_that_failed_for_its_own_sql_or_data_pages_itself(
    home: Settings, sent: list[dict[str, Any]], results: tuple[tuple[str, str], ...]
) -> None:
    on_task_failure(_build_lost())
    on_task_failure(_task_context(NODE, _node_failure(*results)))
    assert [m["title"] for m in sent] == [
        "[recflow] recsys_warehouse.transform.dbt_build failed",
        f"[recflow] recsys_warehouse.{NODE} failed",
    ]
