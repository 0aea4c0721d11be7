"""Run parameters of both DAGs, validated by Airflow (JSON schema) at trigger time.

Strictly typed. Every schema names JSON Schema draft 4 (``$schema``): Airflow
validates a param with ``jsonschema.validate``, which picks the validator from
``$schema`` (the latest draft when there is none), and from draft 6 on
``"type": "integer"`` accepts any number with a zero fractional part, so
``{"epochs": 5.0}`` would pass and fail only inside the training job. For
jsonschema's draft 4 an integer is a Python ``int`` (JSON 5, never 5.0 nor
true), in every process that validates: the API server (the serialized DAG
keeps each schema whole, ``$schema`` included), the ``airflow dags trigger``
CLI, backfills and the task itself. Draft 4 writes an exclusive bound as ``minimum`` plus
``"exclusiveMinimum": true``. An error names the param: ``Invalid input for
param epochs: 5.0 is not of type 'integer'`` (HTTP 400 from the REST API).

Keys that are not params: Airflow 3.3 merges them into the params with an empty
schema and accepts them. :func:`check_conf` is the one rule for a run's conf (no key
that is not a param, every value valid for its param's schema), applied twice:

- ``StrictConfMiddleware`` in the API server (the REST API, which the UI's trigger form
  uses too) answers HTTP 400 before Airflow creates the run, once a plugin in the plugins
  folder lists it in ``fastapi_root_middlewares``;
- :func:`refuse_bad_params`, every recsys task's ``pre_execute`` hook
  (``recflow.airflow.defaults.DEFAULT_ARGS``), fails the task with ``ParamsError`` before it
  does anything, whatever created the run: the CLI (``airflow dags trigger``, ``airflow dags
  test``) creates runs in-process, past the API server. ``ParamsError`` is a verdict: the task
  is not retried.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from jsonschema import Draft4Validator, FormatChecker, validate
from jsonschema.exceptions import ValidationError

from airflow.sdk import Param
from recflow.core.declare import SHARE_BOUNDS
from recflow.core.errors import ConfigError, ParamsError
from recflow.core.model_names import name_refusal
from recflow_ml.hyperparameters import DECLARATIONS, Declaration

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from recflow.core.config import Settings

JSON_SCHEMA_DRAFT_4 = "http://json-schema.org/draft-04/schema#"
"""The dialect of every schema here: its ``integer`` refuses 5.0."""


def strict_param(default: Any, description: str, **schema: Any) -> Param:
    """A param whose JSON schema (``type`` required) is read as draft 4; the schema is checked now."""
    if "type" not in schema:
        raise ValueError(f"a strict param declares its type: {schema}")
    full = {"$schema": JSON_SCHEMA_DRAFT_4, **schema}
    Draft4Validator.check_schema(full)
    return Param(default, description=description, schema=full)


def hyperparameter_schema(declared: Declaration) -> dict[str, Any]:
    """The JSON schema (draft 4, without ``$schema``) of a hyperparameter's declared type and bounds."""
    bounds = declared.bounds
    schema: dict[str, Any] = {"type": "integer" if declared.kind is int else "number"}
    if bounds.choices:
        return {**schema, "enum": list(bounds.choices)}
    if bounds.minimum is not None:
        schema["minimum"] = bounds.minimum
        if bounds.exclusive_minimum:
            schema["exclusiveMinimum"] = True
    if bounds.maximum is not None:
        schema["maximum"] = bounds.maximum
        if bounds.exclusive_maximum:
            schema["exclusiveMaximum"] = True
    return schema


def hyperparameter_params() -> dict[str, Param]:
    """A param for each of the model's hyperparameters, as ``recflow_ml.hyperparameters`` declares
    it (default, help, type, bounds): the job and the DAG accept the same values."""
    return {
        name: strict_param(declared.default, declared.help, **hyperparameter_schema(declared))
        for name, declared in DECLARATIONS.items()
    }


HYPERPARAMETERS: dict[str, Param] = hyperparameter_params()
"""The hyperparameters' params, derived from their one declaration (``recflow_ml.hyperparameters``)."""

TRAIN_PARAMS: dict[str, Param] = {
    **HYPERPARAMETERS,
    "dry_run": strict_param(False, "Train and evaluate, never publish.", type="boolean"),
    "model_name": strict_param(
        None,
        "Registered model name; empty = RECFLOW_MODEL_NAME (default recsys-demo).",
        type=["null", "string"],
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
    ),
}


WAREHOUSE_PARAMS: dict[str, Param] = {
    "reload_from": strict_param(
        None,
        "Historical reload: first day (YYYY-MM-DD) to land and check in this one run; empty = the run's own day.",
        type=["null", "string"],
        format="date",
    ),
    "reload_to": strict_param(
        None,
        "Historical reload: last day (inclusive); give both or neither.",
        type=["null", "string"],
        format="date",
    ),
    "max_quarantine_share": strict_param(
        None,
        "The largest share of a day's rows that may be quarantined before the day is refused; "
        "empty = RECFLOW_MAX_QUARANTINE_SHARE (default 0.01).",
        type=["null", "number"],
        minimum=SHARE_BOUNDS[0],
        maximum=SHARE_BOUNDS[1],
    ),
    "check_volume": strict_param(
        True,
        "Refuse a day whose row count is outside the recent days' range; turn off only for a "
        "one-off historical reload of data with spiky volume.",
        type="boolean",
    ),
}


def unknown_conf_keys(conf: Mapping[str, Any], declared: Collection[str]) -> list[str]:
    """The keys of a run's conf that are not params of its DAG, sorted."""
    return sorted(key for key in conf if key not in declared)


def unknown_conf_message(
    dag_id: str, unknown: list[str], conf: Mapping[str, Any], declared: Collection[str]
) -> str:
    given = ", ".join(f"{key}={conf[key]!r}" for key in unknown)
    return (
        f"Invalid conf for Dag {dag_id!r}: {', '.join(unknown)} "
        f"{'is not a param' if len(unknown) == 1 else 'are not params'} of this Dag (given {given}); "
        f"its params are {', '.join(sorted(declared))} (each with its rule on its trigger form and in its details)"
    )


def check_conf(dag_id: str, declared: Mapping[str, Any], conf: Mapping[str, Any]) -> None:
    """Refuse a run's ``conf`` for the Dag whose params are ``declared`` (name -> its ``Param``, the SDK's
    or the API server's serialized one: anything with a JSON ``schema``): a key that is not a param, or
    a value its param's schema refuses (``ParamsError`` naming the key, the value and the rule).

    Values are validated as Airflow validates them (``jsonschema.validate``, the dialect from the
    schema's ``$schema``, with a format checker), and the message starts as Airflow's does. A number
    that is not finite is refused too: JSON Schema cannot say so, and NaN passes every bound (Python's
    JSON reads ``NaN``), so ``max_quarantine_share=NaN`` would reach the audit; and a string must match
    its pattern whole (Python's ``$`` lets a last newline through)."""
    unknown = unknown_conf_keys(conf, declared)
    if unknown:
        raise ParamsError(unknown_conf_message(dag_id, unknown, conf, declared))
    for key, value in conf.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamsError(f"Invalid input for param {key}: {value!r} is not a finite number")
        schema = declared[key].schema
        try:
            validate(value, schema, format_checker=FormatChecker())
        except ValidationError as exc:
            raise ParamsError(
                f"Invalid input for param {key}: {exc.message} (given {key}={value!r})"
            ) from None
        pattern = schema.get("pattern")
        if isinstance(value, str) and pattern and not re.fullmatch(pattern, value):
            # jsonschema searches with Python's re, whose $ also matches before a last newline: 'x\n'
            # passed ^…$ and was published as a model named 'x\n'
            raise ParamsError(
                f"Invalid input for param {key}: {value!r} does not match {pattern!r} as a whole "
                f"(given {key}={value!r})"
            )


def chosen_model_name(settings: Settings, params: Mapping[str, Any] | None) -> str:
    """The run's model name: its ``model_name`` param, else ``RECFLOW_MODEL_NAME``; refused (not retried)
    when the configured registry would not take it, so a run meets the registry's rule before it trains,
    not when it publishes."""
    given = (params or {}).get("model_name")
    name = str(given) if given else settings.model_name
    refusal = name_refusal(settings.registry_backend, name)
    if refusal is None:
        return name
    if given:
        raise ParamsError(f"Invalid input for param model_name: {refusal}")
    raise ConfigError(f"RECFLOW_MODEL_NAME: {refusal}")


def params_of(params: Any) -> dict[str, Any]:
    """A Dag's params (the SDK's ``ParamsDict`` or the API server's serialized one) by name."""
    return {name: params.get_param(name) for name in params}


def refuse_bad_params(context: Mapping[str, Any]) -> None:
    """Every recsys task's ``pre_execute`` hook: the run's conf passes :func:`check_conf` or the task
    fails now with ``ParamsError`` (no retry), before it reads a param or touches anything."""
    dag, dag_run = context["dag"], context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    if conf and dag.params:  # as the API server: a Dag that declares no params takes any conf
        check_conf(dag.dag_id, params_of(dag.params), conf)


DeclaredParams = Callable[[str], Mapping[str, Any] | None]
"""dag id -> its params; None when the Dag is unknown or declares no params (no check)."""


def declared_params_in_metadata_db(dag_id: str) -> dict[str, Any] | None:
    """The params of the latest serialized version of ``dag_id`` (what the API server triggers)."""
    from airflow.models.dagbag import DBDagBag  # noqa: PLC0415 (the metadata DB's models: only in the API server's check, not at DAG parse)
    from airflow.utils.session import create_session  # noqa: PLC0415 (as above)

    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
        if dag is None or not dag.params:
            return None
        return params_of(dag.params)


_TRIGGER_PATH = re.compile(r"/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/?$")
_BACKFILL_PATH = re.compile(r"/api/v2/backfills(/dry_run)?/?$")


def _is_conf_request(path: str) -> bool:
    return bool(_TRIGGER_PATH.search(path) or _BACKFILL_PATH.search(path))


def _conf_of_request(path: str, body: Any) -> tuple[str, Mapping[str, Any]] | None:
    """(dag id, conf) of a trigger or backfill request with a non-empty conf; else None."""
    if not isinstance(body, dict):
        return None
    if trigger := _TRIGGER_PATH.search(path):
        dag_id, conf = trigger["dag_id"], body.get("conf")
    elif _BACKFILL_PATH.search(path):
        dag_id, conf = body.get("dag_id"), body.get("dag_run_conf")
    else:
        return None
    if not isinstance(dag_id, str) or not isinstance(conf, dict) or not conf:
        return None
    return dag_id, conf


CLOCK_SKEW = timedelta(hours=1)
"""How far after the server's now a trigger's logical date may be: the UI's form fills in the browser's
now, and a browser's clock may run ahead of the server's."""


def _logical_date_to_come(body: Any) -> str | None:
    """The ``logical_date`` of a trigger request's body when it is after now (beyond :data:`CLOCK_SKEW`),
    as written, else None."""
    logical = body.get("logical_date") if isinstance(body, dict) else None
    if not isinstance(logical, str):
        return None
    try:
        when = datetime.fromisoformat(logical)
        if when.tzinfo is None:
            return None  # Airflow answers 422: it takes aware dates only
        return logical if when.astimezone(UTC) > datetime.now(UTC) + CLOCK_SKEW else None
    except (ValueError, OverflowError):  # not a date, or a year at the end of the calendar: Airflow's 422
        return None


def request_refusal(path: str, body: Any, declared_params: DeclaredParams) -> str | None:
    """Why a trigger or backfill of a Dag that declares params is refused, or None: its conf
    (:func:`check_conf`), or a logical date to come. Airflow takes a run for a date after now and holds
    it, one of the Dag's active runs, without running a task until then: a date in 2027 stopped the
    warehouse's scheduled days behind it (and what would it process? the day has not landed)."""
    request = _conf_of_request(path, body)
    trigger = _TRIGGER_PATH.search(path)
    to_come = _logical_date_to_come(body) if trigger else None
    if request is not None:
        dag_id = request[0]
    elif trigger is not None and to_come is not None:
        dag_id = trigger["dag_id"]
    else:
        return None
    declared = declared_params(dag_id)
    if not declared:
        return None
    if request is not None:
        try:
            check_conf(dag_id, declared, request[1])
        except ParamsError as refused:
            return str(refused)
    if to_come is not None:
        return (
            f"logical_date {to_come} is after now: Airflow would hold the run, one of {dag_id}'s active "
            "runs, without running a task until then; trigger a date that has begun"
        )
    return None


class StrictConfMiddleware:
    """API-server middleware: a trigger or backfill that :func:`request_refusal` refuses gets HTTP 400.

    Only ``POST .../api/v2/dags/{dag_id}/dagRuns`` and ``POST .../api/v2/backfills[/dry_run]``
    with a non-empty conf or (a trigger) a logical date are looked at, and only when they carry credentials
    (otherwise Airflow answers 401 as usual); a Dag that declares no params accepts
    any conf. Everything else is Airflow's (which validates the values again).
    """

    def __init__(self, app: ASGIApp, declared_params: DeclaredParams | None = None) -> None:
        self.app = app
        self.declared_params = declared_params or declared_params_in_metadata_db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not _is_conf_request(scope["path"])
            or not _has_credentials(scope)
        ):
            await self.app(scope, receive, send)
            return
        messages = await _read_request(receive)
        replay = _replaying(messages, receive)
        try:
            body = json.loads(b"".join(m.get("body", b"") for m in messages) or b"null")
        except ValueError:
            body = None  # Airflow answers 422
        refused = await anyio.to_thread.run_sync(request_refusal, scope["path"], body, self.declared_params)
        if refused is not None:
            await _send_json(send, 400, {"detail": refused})
            return
        await self.app(scope, replay, send)


def _has_credentials(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or [])
    return b"authorization" in headers or b"_token=" in headers.get(b"cookie", b"")


async def _read_request(receive: Receive) -> list[Message]:
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _send_json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
