"""Running expectations through Great Expectations 1.x against the warehouse.

A suite here is a list of :class:`Asset` s: a SQL query (a GX *query asset* on a SQL
data source, the same thing a Snowflake or BigQuery deployment would run) with the
expectations that must hold on its rows. Derived checks (per-user aggregates, anti-joins,
cross-partition look-ups) are computed by the query, so every expectation stays a
plain column or table expectation.

Great Expectations is imported inside the functions only: importing it takes seconds,
and this module is imported while Airflow parses DAGs.

The data source is the warehouse's plain SQLAlchemy URL (:attr:`Warehouse.sqlalchemy_url`),
so the same queries run on PostgreSQL (psycopg2) and on the embedded DuckDB file
(duckdb-engine), with one DuckDB-specific piece, :func:`_duckdb_engine_kwargs`: GX reads a
query's result *after* returning the SQLAlchemy connection to its pool, and
SQLAlchemy rolls the connection back on return; with DuckDB that rollback discards the
pending result, and every metric fails with ``IndexError: list index out of range``
(great_expectations issues #10738 and #11579). So there the data source's connections are
cursors of one DuckDB connection, in DuckDB's autocommit mode, whose
``begin``/``commit``/``rollback`` are no-ops: nothing is ever written through them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recflow.core.config import Settings
from recflow.core.errors import RecflowError
from recflow.quality.report import MAX_OFFENDING_ROWS, ExpectationFailure, QualityReport, format_value
from recflow.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse, connect
from recflow.warehouse.spark_errors import spark_says_in

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.data_context.data_context.abstract_data_context import AbstractDataContext
    from great_expectations.datasource.fluent.sql_datasource import SQLDatasource
    from great_expectations.expectations.expectation import Expectation

log = logging.getLogger(__name__)


class SuiteNotEvaluated(RecflowError):
    """Great Expectations could not evaluate an expectation (a query failed): no verdict, retryable."""


RULE_KEY = "recflow_rule"
"""The ``meta`` key under which an expectation carries its rule's key (see :class:`Asset`)."""

_IGNORED_KWARGS = frozenset({"batch_id", "column", "column_A", "column_B", "result_format"})


@dataclass(frozen=True)
class Asset:
    """A query whose rows a set of expectations is about.

    ``index_columns`` are the key columns GX reports for each offending row (they must
    be columns of the query); ``noun`` names what a row is, for the message ("rows",
    "users").
    """

    name: str
    query: str
    expectations: Sequence[Expectation]
    index_columns: tuple[str, ...] = ()
    noun: str = "rows"


@dataclass(frozen=True)
class Outcome:
    """The failure of one expectation, with the rule key its ``meta`` carried."""

    rule: str
    failure: ExpectationFailure
    evaluated: bool
    """False when GX could not evaluate the expectation (a query error): the failure says why."""


@dataclass(frozen=True)
class SuiteRun:
    evaluated: int
    outcomes: tuple[Outcome, ...]
    seconds: float


def rule(key: str, description: str) -> dict[str, Any]:
    """The keyword arguments that tag an expectation with its rule (``meta`` and ``description``)."""
    return {"meta": {RULE_KEY: key}, "description": description}


def import_gx() -> float:
    """Import Great Expectations (slow the first time in a process); return the seconds it took.

    GX logs hundreds of INFO lines about itself while importing and validating; unless
    the ``great_expectations`` logger was configured explicitly, it is set to WARNING so
    that task logs show recflow's progress, not GX's internals.
    """
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    started = time.monotonic()
    import great_expectations  # noqa: F401, PLC0415 (Great Expectations takes seconds to import: only a check that runs loads it)

    return time.monotonic() - started


def _ephemeral_context() -> AbstractDataContext:
    import great_expectations as gx  # noqa: PLC0415 (Great Expectations takes seconds to import: only a check that runs loads it)
    from great_expectations.data_context.types.base import (  # noqa: PLC0415 (Great Expectations takes seconds to import: only a check that runs loads it)
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _duckdb_engine_kwargs(warehouse: DuckDBWarehouse) -> dict[str, Any]:
    """``create_engine`` arguments whose connections are autocommit cursors of ``warehouse``'s connection."""
    from duckdb_engine import ConnectionWrapper  # noqa: PLC0415 (duckdb_engine loads DuckDB: only on the embedded warehouse)

    class _AutocommitConnection(ConnectionWrapper):
        """A DuckDB cursor in autocommit mode: a rollback no longer discards a pending result."""

        def begin(self) -> None:
            pass

        def commit(self) -> None:
            pass

        def rollback(self) -> None:
            pass

    def creator() -> ConnectionWrapper:
        return _AutocommitConnection(warehouse.connection.cursor())

    return {"creator": creator}


def _datasource(warehouse: Warehouse) -> SQLDatasource:
    """The GX data source of the warehouse's engine, on its SQLAlchemy URL."""
    from great_expectations.datasource.fluent.postgres_datasource import PostgresDatasource  # noqa: PLC0415 (Great Expectations takes seconds to import: only a check that runs loads it)
    from great_expectations.datasource.fluent.sql_datasource import SQLDatasource  # noqa: PLC0415 (Great Expectations takes seconds to import: only a check that runs loads it)

    url = warehouse.sqlalchemy_url
    if isinstance(warehouse, DuckDBWarehouse):
        # ``kwargs`` go to ``sqlalchemy.create_engine``; GX's stub of ``add_sql`` does not list them.
        return SQLDatasource(name="warehouse", connection_string=url, kwargs=_duckdb_engine_kwargs(warehouse))
    if isinstance(warehouse, PostgresWarehouse):
        return PostgresDatasource(name="warehouse", connection_string=url)
    return SQLDatasource(name="warehouse", connection_string=url)


@contextmanager
def _warehouse_source(settings: Settings, context: AbstractDataContext) -> Iterator[SQLDatasource]:
    """A GX SQL data source on the warehouse; closed (all its connections) on exit."""
    with connect(settings) as base:
        source = context.data_sources.add_sql(datasource=_datasource(base))
        try:
            yield source
        finally:
            source.get_engine().dispose()
            source.get_execution_engine().engine.dispose()


def run_suite(settings: Settings, suite: str, assets: Sequence[Asset]) -> SuiteRun:
    """Validate every asset with its expectations; return the failed ones."""
    import_gx()
    import great_expectations as gx  # noqa: PLC0415 (Great Expectations takes seconds to import: only a check that runs loads it)

    started = time.monotonic()
    context = _ephemeral_context()
    outcomes: list[Outcome] = []
    evaluated = 0
    with _warehouse_source(settings, context) as source:
        for asset in assets:
            batch_definition = source.add_query_asset(
                name=asset.name, query=asset.query
            ).add_batch_definition_whole_table(asset.name)
            expectation_suite = context.suites.add(gx.ExpectationSuite(name=f"{suite}.{asset.name}"))
            for expectation in asset.expectations:
                expectation_suite.add_expectation(expectation)
            validation = context.validation_definitions.add(
                gx.ValidationDefinition(
                    name=f"{suite}.{asset.name}", data=batch_definition, suite=expectation_suite
                )
            )
            result_format: dict[str, Any] = {
                "result_format": "SUMMARY",
                "partial_unexpected_count": MAX_OFFENDING_ROWS,
            }
            if asset.index_columns:
                result_format["unexpected_index_column_names"] = list(asset.index_columns)
            result = validation.run(result_format=result_format)
            evaluated += len(result.results)
            failed = [_outcome(r, asset) for r in result.results if not r.success]
            # GX does not keep the suite's order; report failures in the order they were declared
            order = {(e.meta or {}).get(RULE_KEY): i for i, e in enumerate(asset.expectations)}
            outcomes.extend(sorted(failed, key=lambda o: order.get(o.rule, len(order))))
            log.info(
                "%s: %s: %d expectations, %d failed",
                suite,
                asset.name,
                len(result.results),
                sum(1 for r in result.results if not r.success),
            )
    seconds = time.monotonic() - started
    unevaluated = [o for o in outcomes if not o.evaluated]
    if unevaluated:
        # the warehouse or GX failed, not the data: no verdict (a refusal would blame the data); retried
        raise SuiteNotEvaluated(
            f"suite {suite}: {len(unevaluated)} expectation(s) could not be evaluated, so no verdict was given "
            "and nothing was published or recorded: "
            + "; ".join(f"{o.failure.expectation} ({o.rule}): {o.failure.observed}" for o in unevaluated)[
                :2000
            ]
            + ". An infrastructure failure (the warehouse or Great Expectations), not the data's: the task is "
            "retried; if it fails again, look at the warehouse's own logs for the error above.",
            runbook="infrastructure",
        )
    log.info("%s: %d expectations evaluated in %.1f s", suite, evaluated, seconds)
    return SuiteRun(evaluated=evaluated, outcomes=tuple(outcomes), seconds=seconds)


def report_of(
    run: SuiteRun,
    *,
    suite: str,
    target: str,
    rows: int,
    started: float,
    import_seconds: float,
    rejected_rows: int = 0,
) -> QualityReport:
    """The suite's report, logged with its timings (and its summary when it passed)."""
    report = QualityReport(
        suite=suite,
        target=target,
        success=not run.outcomes,
        evaluated=run.evaluated,
        failures=tuple(outcome.failure for outcome in run.outcomes),
        rows=rows,
        rejected_rows=rejected_rows,
    )
    log.info(
        "suite %s: %d expectations on %d rows checked in %.1f s (GX import %.1f s, validation %.1f s)",
        suite,
        report.evaluated,
        rows,
        time.monotonic() - started,
        import_seconds,
        run.seconds,
    )
    if report.success:
        log.info("%s", report.summary())
    return report


def _exception_message(result: ExpectationValidationResult) -> str | None:
    """GX's message when it could not evaluate the expectation (it then reports success=False)."""
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _kwargs_summary(kwargs: Mapping[str, Any]) -> str:
    parts = []
    for key, value in kwargs.items():
        if key in _IGNORED_KWARGS or value is None:
            continue
        parts.append(f"{key}={format_value(value)}")
    return ", ".join(parts)


def _observed(result: Mapping[str, Any], kwargs: Mapping[str, Any], noun: str) -> str:
    if "unexpected_count" in result and "element_count" in result:
        unexpected = int(result["unexpected_count"])
        total = int(result["element_count"])
        percent = 100.0 * unexpected / total if total else 0.0
        return f"{unexpected} of {total} {noun} ({percent:.2f}%) unexpected"
    observed = result.get("observed_value")
    if "min_value" in kwargs or "max_value" in kwargs:
        low = kwargs.get("min_value")
        high = kwargs.get("max_value")
        low_text = "-inf" if low is None else format_value(low)
        high_text = "inf" if high is None else format_value(high)
        return f"observed {format_value(observed)}, expected {low_text} .. {high_text}"
    text = f"observed {format_value(observed)}"
    mismatched = (result.get("details") or {}).get("mismatched")
    if isinstance(mismatched, Mapping):
        missing = mismatched.get("missing") or []
        unexpected_columns = mismatched.get("unexpected") or []
        if missing:
            text += f"; missing {format_value(list(missing))}"
        if unexpected_columns:
            text += f"; unexpected {format_value(list(unexpected_columns))}"
    return text


def _distinct(values: Sequence[object]) -> list[object]:
    seen: set[str] = set()
    distinct = []
    for value in values:
        key = repr(value)
        if key not in seen:
            seen.add(key)
            distinct.append(value)
    return distinct


def _outcome(result: ExpectationValidationResult, asset: Asset) -> Outcome:
    config = result.expectation_config
    if config is None:
        raise RuntimeError(f"GX returned a result without its expectation for asset {asset.name}")
    kwargs: Mapping[str, Any] = config.kwargs
    column: str | None = kwargs.get("column")
    if column is None and "column_A" in kwargs:
        column = f"{kwargs['column_A']}, {kwargs['column_B']}"
    meta = config.meta or {}
    key = str(meta.get(RULE_KEY, config.type))
    description = str(config.description or "")
    error = _exception_message(result)
    if error is not None:
        # on Spark, GX passes on SQLAlchemy's text of PyHive's error: kilobytes of Java frames around
        # the one message that says what broke; that message is what the ON-CALL line can hold
        error = spark_says_in(error) or error
    details: Mapping[str, Any] = result.result or {}
    if error is not None:
        failure = ExpectationFailure(
            expectation=config.type,
            column=column,
            kwargs=_kwargs_summary(kwargs),
            observed=f"could not be evaluated: {error}",
            unexpected_count=None,
            element_count=None,
            sample=[],
            offending_rows=[],
            description=description,
        )
        return Outcome(rule=key, failure=failure, evaluated=False)
    unexpected_count = details.get("unexpected_count")
    element_count = details.get("element_count")
    rows = details.get("partial_unexpected_index_list") or []
    failure = ExpectationFailure(
        expectation=config.type,
        column=column,
        kwargs=_kwargs_summary(kwargs),
        observed=_observed(details, kwargs, asset.noun),
        unexpected_count=None if unexpected_count is None else int(unexpected_count),
        element_count=None if element_count is None else int(element_count),
        sample=_distinct(details.get("partial_unexpected_list") or [])[:MAX_OFFENDING_ROWS],
        offending_rows=[dict(row) for row in rows[:MAX_OFFENDING_ROWS]],
        description=description,
    )
    return Outcome(rule=key, failure=failure, evaluated=True)
