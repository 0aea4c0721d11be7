from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recflow.airflow.params import (
    HYPERPARAMETERS,
    JSON_SCHEMA_DRAFT_4,
    TRAIN_PARAMS,
    WAREHOUSE_PARAMS,
    StrictConfMiddleware,
    check_conf,
    hyperparameter_params,
    params_of,
    refuse_bad_params,
    strict_param,
    unknown_conf_keys,
)
from recflow.core.errors import ParamsError
from recflow.training.jobs import hyperparameters_of
from recflow_ml.contract import ContractError
from recflow_ml.hyperparameters import DECLARATIONS, Hyperparameters

ALL_PARAMS = {**TRAIN_PARAMS, **WAREHOUSE_PARAMS}
INTEGERS = sorted(name for name, p in ALL_PARAMS.items() if p.schema["type"] == "integer")


def _types(name: str) -> list[str]:
    kind = ALL_PARAMS[name].schema["type"]
    return kind if isinstance(kind, list) else [kind]


def _refuses(name: str, value: Any) -> str:
    """The message of ParamsDict refusing ``{name: value}`` (what a task's params check does)."""
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(dict(ALL_PARAMS))
    with pytest.raises(ParamValidationError) as refused:
        params[name] = value
    return str(refused.value)


def test_params_mirror_the_models_hyperparameters() -> None:
    """A run with default params trains exactly the model's chosen defaults."""
    defaults = Hyperparameters()
    assert set(HYPERPARAMETERS) == {f.name for f in dataclasses.fields(Hyperparameters)}
    assert {name: param.value for name, param in HYPERPARAMETERS.items()} == dataclasses.asdict(defaults)
    assert Hyperparameters.from_strings(hyperparameters_of({})) == defaults


def test_overrides_become_strings() -> None:
    hps = hyperparameters_of({"epochs": 3, "learning_rate": 0.05})
    assert hps["epochs"] == "3" and hps["learning_rate"] == "0.05"
    assert Hyperparameters.from_strings(hps).epochs == 3


def test_a_bound_changed_in_its_declaration_moves_the_dag_param_and_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hyperparameters are declared once (recflow_ml.hyperparameters): the Dag's params follow."""
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    declared = DECLARATIONS["embedding_dim"]
    assert hyperparameter_params()["embedding_dim"].schema["maximum"] == declared.bounds.maximum == 512
    tighter = dataclasses.replace(declared, bounds=dataclasses.replace(declared.bounds, maximum=128))
    monkeypatch.setitem(DECLARATIONS, "embedding_dim", tighter)

    params = ParamsDict(hyperparameter_params())
    assert params["embedding_dim"] == declared.default == 128
    params["embedding_dim"] = 128
    with pytest.raises(ParamValidationError, match=r"256 is greater than the maximum of 128"):
        params["embedding_dim"] = 256
    assert Hyperparameters.from_strings({"embedding_dim": "128"}).embedding_dim == 128
    with pytest.raises(ContractError, match=r"^hyperparameter embedding_dim=256 must be <= 128$"):
        Hyperparameters.from_strings({"embedding_dim": "256"})


def test_the_dag_refuses_what_the_job_refuses_and_accepts_what_it_accepts() -> None:
    """At each declared bound, and just past it, the Dag's param and the job agree."""
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    for name, declared in DECLARATIONS.items():
        bounds, step = declared.bounds, 1 if declared.kind is int else 1e-9
        edges = [
            *bounds.choices,
            *([bounds.minimum, bounds.minimum - step] if bounds.minimum is not None else []),
            *([bounds.maximum, bounds.maximum + step] if bounds.maximum is not None else []),
        ]
        for edge in edges:
            value = declared.kind(edge)
            try:
                Hyperparameters(**{name: value})  # type: ignore[arg-type]
                job_accepts = True
            except ContractError:
                job_accepts = False
            try:
                ParamsDict(dict(HYPERPARAMETERS))[name] = value
                dag_accepts = True
            except ParamValidationError:
                dag_accepts = False
            assert job_accepts == dag_accepts, (name, value)


def test_every_schema_is_draft_4_and_typed_and_its_default_valid() -> None:
    from airflow.sdk.definitions.param import ParamsDict

    for name, param in ALL_PARAMS.items():
        assert param.schema["$schema"] == JSON_SCHEMA_DRAFT_4, name
        assert "type" in param.schema and param.description, name
    assert ParamsDict(dict(ALL_PARAMS)).validate() == {n: p.value for n, p in ALL_PARAMS.items()}


def test_integer_params_are_the_models_integers() -> None:
    ints = {f.name for f in dataclasses.fields(Hyperparameters) if f.type in (int, "int")}
    assert set(INTEGERS) == ints


@pytest.mark.parametrize("name", INTEGERS)
@pytest.mark.parametrize("value", [5.0, "5", True, 5.5, None])
def test_integers_refuse_anything_but_an_integer(name: str, value: Any) -> None:
    message = _refuses(name, value)
    assert message.startswith(f"Invalid input for param {name}: ")
    assert "is not of type 'integer'" in message or "is not one of" in message


@pytest.mark.parametrize("name", INTEGERS)
def test_integers_accept_an_integer_in_range(name: str) -> None:
    from airflow.sdk.definitions.param import ParamsDict

    schema = ALL_PARAMS[name].schema
    lowest = schema["enum"][0] if "enum" in schema else schema["minimum"]
    params = ParamsDict(dict(ALL_PARAMS))
    params[name] = lowest
    assert params[name] == lowest


def test_a_float_of_an_integral_value_is_refused_with_the_params_name() -> None:
    """The issue's case: 5.0 was counted as an integer (draft 6+) and failed only in the training job."""
    message = _refuses("epochs", 5.0)
    assert message.startswith("Invalid input for param epochs: 5.0 is not of type 'integer'"), message
    assert strict_param(1, "x", type="integer").resolve(5) == 5
    with pytest.raises(ValueError, match="not of type 'integer'"):
        strict_param(1, "x", type="integer").resolve(5.0)


@pytest.mark.parametrize("name", sorted(ALL_PARAMS))
def test_every_param_refuses_a_wrong_type(name: str) -> None:
    wrong = 5 if "string" in _types(name) else "5"
    message = _refuses(name, wrong)
    assert message.startswith(f"Invalid input for param {name}: "), message


def _out_of_range(schema: dict[str, Any]) -> list[Any]:
    values: list[Any] = []
    integral = "integer" in schema["type"]
    step = 1 if integral else 1e-9
    if "minimum" in schema:
        values.append(schema["minimum"] if schema.get("exclusiveMinimum") else schema["minimum"] - step)
    if "maximum" in schema:
        values.append(schema["maximum"] if schema.get("exclusiveMaximum") else schema["maximum"] + step)
    if "enum" in schema:
        values.append(max(schema["enum"]) + 1)
    return values


NUMERIC = sorted(n for n in ALL_PARAMS if {"integer", "number"} & set(_types(n)))


@pytest.mark.parametrize("name", NUMERIC)
def test_every_numeric_param_is_bounded_and_refuses_out_of_range(name: str) -> None:
    schema = ALL_PARAMS[name].schema
    assert "enum" in schema or {"minimum", "maximum"} <= set(schema), f"{name} is unbounded"
    for value in _out_of_range(schema):
        message = _refuses(name, value)
        assert message.startswith(f"Invalid input for param {name}: "), message


def test_exclusive_bounds_are_exclusive() -> None:
    assert "less than or equal to the minimum of 0" in _refuses("learning_rate", 0)
    assert "greater than or equal to the maximum of 1" in _refuses("dropout", 1)
    assert "Invalid input for param model_name" in _refuses("model_name", "bad name!")
    assert "Invalid input for param reload_from" in _refuses("reload_from", "2026-13-01")


def test_warehouse_params() -> None:
    from airflow.sdk.definitions.param import ParamsDict

    params = ParamsDict(dict(WAREHOUSE_PARAMS))
    assert params.validate() == {
        "reload_from": None,
        "reload_to": None,
        "max_quarantine_share": None,
        "check_volume": True,
    }
    for share in (0, 0.05, 1, None):
        params["max_quarantine_share"] = share
    params["check_volume"] = False
    assert "max_quarantine_share" in _refuses("max_quarantine_share", 1.5)
    assert "max_quarantine_share" in _refuses("max_quarantine_share", -0.1)
    assert "max_quarantine_share" in _refuses("max_quarantine_share", "0.1")
    assert "check_volume" in _refuses("check_volume", "false")
    assert "check_volume" in _refuses("check_volume", 0)


def test_a_strict_param_declares_a_valid_draft_4_schema() -> None:
    from jsonschema.exceptions import SchemaError

    with pytest.raises(ValueError, match="declares its type"):
        strict_param(1, "x", minimum=0)
    with pytest.raises(SchemaError):
        strict_param(1.0, "x", type="number", exclusiveMinimum=0)  # draft 6+ spelling


def test_the_api_servers_serialized_dag_refuses_the_same() -> None:
    """The API server validates the serialized DAG's params: the schema, ``$schema`` included, survives."""
    from airflow.sdk import DAG
    from airflow.sdk.bases.operator import BaseOperator
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("params_roundtrip", schedule=None, params=TRAIN_PARAMS) as dag:
        BaseOperator(task_id="noop")
    served = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))
    assert served.params.get_param("epochs").schema == TRAIN_PARAMS["epochs"].schema
    refused: list[dict[str, Any]] = [{"epochs": 5.0}, {"epochs": "5"}, {"epochs": 0}, {"seed": 7.0}]
    for conf in refused:
        with pytest.raises(ValueError, match=f"Invalid input for param {next(iter(conf))}: "):
            served.params.deep_merge(conf).validate()
    accepted = served.params.deep_merge({"epochs": 5, "dry_run": True}).validate()
    assert accepted["epochs"] == 5 and accepted["dry_run"] is True
    # Airflow itself lets a key that is no param through; StrictConfMiddleware refuses it.
    assert "no_such_param" in served.params.deep_merge({"no_such_param": 1}).validate()
    # ... with the same check as the task, on the API server's own (serialized) params
    for conf in [*refused, {"no_such_param": 1}]:
        with pytest.raises(ParamsError, match=next(iter(conf))):
            check_conf("params_roundtrip", params_of(served.params), conf)
    check_conf("params_roundtrip", params_of(served.params), {"epochs": 5, "dry_run": True})


def test_unknown_conf_keys() -> None:
    assert unknown_conf_keys({"epochs": 5, "zz": 1, "aa": 2}, TRAIN_PARAMS) == ["aa", "zz"]
    assert unknown_conf_keys({}, TRAIN_PARAMS) == []


def test_check_conf_names_the_key_the_value_and_the_params() -> None:
    with pytest.raises(ParamsError) as refused:
        check_conf("recsys_train_and_publish", TRAIN_PARAMS, {"eppochs": 3, "epochs": 5})
    message = str(refused.value)
    assert message.startswith("Invalid conf for Dag 'recsys_train_and_publish': eppochs is not a param")
    assert "given eppochs=3" in message
    assert ", ".join(sorted(TRAIN_PARAMS)) in message
    with pytest.raises(ParamsError, match=r"^Invalid input for param epochs: 5\.0 is not of type 'integer'"):
        check_conf("recsys_train_and_publish", TRAIN_PARAMS, {"epochs": 5.0})
    with pytest.raises(ParamsError, match="Invalid input for param reload_from"):
        check_conf("recsys_warehouse", WAREHOUSE_PARAMS, {"reload_from": "2026-13-01"})
    before = {name: param.value for name, param in TRAIN_PARAMS.items()}
    check_conf("recsys_train_and_publish", TRAIN_PARAMS, {"epochs": 5, "dry_run": True, "model_name": None})
    after = {name: param.value for name, param in TRAIN_PARAMS.items()}
    assert after == before, "checking a conf leaves the declared params' values alone"


def test_each_task_refuses_the_runs_conf_before_it_starts() -> None:
    """``pre_execute`` of every task: the run's conf against the Dag's own params, as Airflow's context has them."""
    from types import SimpleNamespace

    from airflow.sdk import DAG

    dag = DAG("recsys_train_and_publish", schedule=None, params=TRAIN_PARAMS)
    with pytest.raises(ParamsError, match="eppochs is not a param"):
        refuse_bad_params({"dag": dag, "dag_run": SimpleNamespace(conf={"eppochs": 3})})
    with pytest.raises(ParamsError, match="Invalid input for param dry_run"):
        refuse_bad_params({"dag": dag, "dag_run": SimpleNamespace(conf={"dry_run": "yes"})})
    refuse_bad_params({"dag": dag, "dag_run": SimpleNamespace(conf={"epochs": 3})})
    refuse_bad_params({"dag": dag, "dag_run": SimpleNamespace(conf=None)})
    no_params = DAG("other", schedule=None)
    refuse_bad_params({"dag": no_params, "dag_run": SimpleNamespace(conf={"anything": 1})})


# --- StrictConfMiddleware, in front of a stand-in for Airflow's API -----------------------------------


@pytest.fixture
def api() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            return JSONResponse({"received": json.loads(body)})
        except ValueError:
            return JSONResponse({"received": body.decode()})

    declared = {"recsys_train_and_publish": dict(TRAIN_PARAMS), "no_params": None}
    app = Starlette(
        routes=[
            Route("/api/v2/dags/{dag_id}/dagRuns", echo, methods=["POST"]),
            Route("/api/v2/backfills", echo, methods=["POST"]),
            Route("/api/v2/backfills/dry_run", echo, methods=["POST"]),
        ]
    )
    app.add_middleware(StrictConfMiddleware, declared_params=declared.get)
    client = TestClient(app)
    client.headers["Authorization"] = "Bearer token"
    return client


def test_middleware_refuses_a_key_that_is_no_param(api: Any) -> None:
    response = api.post(
        "/api/v2/dags/recsys_train_and_publish/dagRuns",
        json={"logical_date": None, "conf": {"epochs": 5, "no_such_param": 1, "eppochs": 3}},
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "eppochs, no_such_param are not params" in detail and "recsys_train_and_publish" in detail


def test_middleware_refuses_a_bad_value_as_the_task_would(api: Any) -> None:
    response = api.post("/api/v2/dags/recsys_train_and_publish/dagRuns", json={"conf": {"epochs": 0}})
    assert response.status_code == 400
    with pytest.raises(ParamsError) as task_refusal:
        check_conf("recsys_train_and_publish", TRAIN_PARAMS, {"epochs": 0})
    assert response.json()["detail"] == str(task_refusal.value)


def test_middleware_passes_declared_keys_and_the_whole_body_on(api: Any) -> None:
    body = {"logical_date": None, "conf": {"epochs": 5, "dry_run": True}, "note": "x" * 100_000}
    response = api.post("/api/v2/dags/recsys_train_and_publish/dagRuns", json=body)
    assert response.status_code == 200 and response.json()["received"] == body


@pytest.mark.parametrize("path", ["/api/v2/backfills", "/api/v2/backfills/dry_run"])
def test_middleware_checks_backfills_too(api: Any, path: str) -> None:
    body = {"dag_id": "recsys_train_and_publish", "dag_run_conf": {"no_such_param": 1}}
    response = api.post(path, json=body)
    assert response.status_code == 400 and "no_such_param is not a param" in response.json()["detail"]


def test_middleware_passes_a_body_that_is_not_json_on(api: Any) -> None:
    response = api.post("/api/v2/dags/recsys_train_and_publish/dagRuns", content=b"{not json")
    assert response.status_code == 200 and response.json()["received"] == "{not json"


@pytest.mark.parametrize(
    ("path", "body", "credentials"),
    [
        ("/api/v2/dags/no_params/dagRuns", {"conf": {"anything": 1}}, True),
        ("/api/v2/dags/unknown_dag/dagRuns", {"conf": {"anything": 1}}, True),
        ("/api/v2/dags/recsys_train_and_publish/dagRuns", {"conf": {}}, True),
        ("/api/v2/dags/recsys_train_and_publish/dagRuns", {"conf": {"zz": 1}}, False),
    ],
    ids=["dag-without-params", "unknown-dag", "empty-conf", "no-credentials"],
)
def test_middleware_leaves_the_rest_to_airflow(api: Any, path: str, body: Any, credentials: bool) -> None:
    """Airflow answers these itself (with 401 where the credentials are missing)."""
    if not credentials:
        del api.headers["Authorization"]
    response = api.post(path, json=body)
    assert response.status_code == 200 and response.json()["received"] == body


@pytest.mark.parametrize("text", ["-0.1", "0", "0.05", "1", "1.0001", "2", "nan"])
def test_backfill_checks_the_share_as_the_param_and_the_setting_do(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``recflow backfill --max-quarantine-share`` is refused before Airflow is asked (a paused DAG
    answered only "paused", hiding the mistake), and exactly where the run's param and the setting
    refuse it."""
    from recflow.cli import main
    from recflow.core.config import Settings
    from recflow.core.errors import ConfigError

    try:  # the one rule for a run's conf: the API server's and every task's
        check_conf("recsys_warehouse", WAREHOUSE_PARAMS, {"max_quarantine_share": float(text)})
        param_accepts = True
    except ParamsError:
        param_accepts = False
    try:
        Settings.from_env({"RECFLOW_MAX_QUARANTINE_SHARE": text})
        setting_accepts = True
    except ConfigError:
        setting_accepts = False
    assert param_accepts == setting_accepts
    if param_accepts:
        return
    with pytest.raises(SystemExit) as refused:  # argparse, before any client or settings
        main(["backfill", "--from", "2026-01-01", "--to", "2026-01-02", "--max-quarantine-share", text])
    assert refused.value.code == 2
    assert f"{text} is not a share between 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_number_that_is_not_finite_is_refused_for_every_numeric_param(value: float) -> None:
    """JSON Schema's bounds let NaN through (every comparison is false); the conf's rule does not."""
    numeric = [n for n, p in ALL_PARAMS.items() if {"number", "integer"} & set(_types(n))]
    assert numeric
    for name in numeric:
        declared = TRAIN_PARAMS if name in TRAIN_PARAMS else WAREHOUSE_PARAMS
        with pytest.raises(ParamsError, match=f"param {name}: -?(nan|inf) is not a finite number$"):
            check_conf("dag", declared, {name: value})


@pytest.mark.parametrize("value", ["recsys-demo\n", "x\n"])
def test_a_pattern_holds_for_the_whole_string(value: str, api: Any) -> None:
    """jsonschema searches a pattern with Python's re, where ^…$ matches 'x\\n' (a model then
    registered as 'x\\n'); the task and the API server refuse it."""
    with pytest.raises(ParamsError, match=r"param model_name: .* does not match .* as a whole"):
        check_conf("recsys_train_and_publish", TRAIN_PARAMS, {"model_name": value})
    response = api.post("/api/v2/dags/recsys_train_and_publish/dagRuns", json={"conf": {"model_name": value}})
    assert response.status_code == 400
    check_conf("recsys_train_and_publish", TRAIN_PARAMS, {"model_name": value.strip()})


@pytest.mark.parametrize("conf", [{}, {"epochs": 5}])
def test_middleware_refuses_a_logical_date_to_come(api: Any, conf: dict[str, Any]) -> None:
    """Airflow held a run dated 2027 without running a task, one of the Dag's active runs: with
    max_active_runs taken, the warehouse's scheduled days queued behind it."""
    to_come = (datetime.now(UTC) + timedelta(days=200)).isoformat()
    response = api.post(
        "/api/v2/dags/recsys_train_and_publish/dagRuns", json={"logical_date": to_come, "conf": conf}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"logical_date {to_come} is after now")
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()  # the form's now, a browser's clock ahead
    ends_of_the_calendar = ("9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00")  # Airflow's 422
    naive = (datetime.now(UTC) + timedelta(days=200)).replace(tzinfo=None).isoformat()  # Airflow's 422
    for fine in (
        None,
        "2026-01-03T00:00:00Z",
        datetime.now(UTC).isoformat(),
        soon,
        "not a date",
        naive,
        *ends_of_the_calendar,
    ):
        body = {"logical_date": fine, "conf": conf}
        response = api.post("/api/v2/dags/recsys_train_and_publish/dagRuns", json=body)
        assert response.status_code == 200 and response.json()["received"] == body
    # a Dag that declares no params is Airflow's alone
    body = {"logical_date": to_come, "conf": {}}
    assert api.post("/api/v2/dags/no_params/dagRuns", json=body).json()["received"] == body
