"""What a quality suite found, in a form fit for logs, for tests and for the person on call.

Nothing here imports Great Expectations: these types are what the rest of recflow
(the DAGs, the tests) sees of a validation run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from recflow.core.errors import DataQualityError

MAX_OFFENDING_ROWS = 5
"""How many offending rows a failure keeps (and the error message shows)."""

_MAX_VALUE_CHARS = 200


def format_value(value: object) -> str:
    """A short, unambiguous rendering of one value (quotes on strings, UTC timestamps in ISO form)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        text = value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    elif isinstance(value, dt.date):
        text = value.isoformat()
    elif isinstance(value, list):
        text = "[" + ", ".join(format_value(v) for v in value) + "]"
    elif isinstance(value, tuple):
        text = "(" + ", ".join(format_value(v) for v in value) + ")"
    else:
        text = repr(value)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return text


def format_row(row: Mapping[str, object]) -> str:
    return " ".join(f"{key}={format_value(value)}" for key, value in row.items())


@dataclass(frozen=True)
class ExpectationFailure:
    """One expectation that did not hold (or could not be evaluated)."""

    expectation: str
    """The GX expectation type, e.g. ``expect_column_values_to_not_be_null``."""
    column: str | None
    """The column it is about (``None`` for table-level expectations)."""
    kwargs: str
    """Its arguments other than the column, e.g. ``value_set=['click', 'save']``."""
    observed: str
    """What was found, in words: ``2 of 120 rows (1.67%) unexpected``, ``observed 3, expected 5 .. 10``."""
    unexpected_count: int | None
    element_count: int | None
    sample: list[object]
    """A few offending values."""
    offending_rows: list[dict[str, object]]
    """At most ``MAX_OFFENDING_ROWS`` offending rows, with their key columns and the bad value."""
    description: str = ""
    """What the expectation means in the pipeline's terms, e.g. ``event_id is unique across partitions``."""

    def line(self) -> str:
        """One line: which expectation, on which column, what it means, what was observed."""
        where = f" on {self.column}" if self.column else ""
        args = f" [{self.kwargs}]" if self.kwargs else ""
        what = f" ({self.description})" if self.description else ""
        sample = ""
        if self.sample:
            sample = "; e.g. " + ", ".join(format_value(v) for v in self.sample[:MAX_OFFENDING_ROWS])
        return f"{self.expectation}{where}{args}{what}: {self.observed}{sample}"


@dataclass(frozen=True)
class QualityReport:
    """The outcome of one suite on one target."""

    suite: str
    target: str
    """What was checked, e.g. ``raw.events ds=2026-01-03``."""
    success: bool
    evaluated: int
    """How many expectations were evaluated."""
    failures: tuple[ExpectationFailure, ...]
    rows: int
    """How many rows the target has."""
    rejected_rows: int = 0
    """How many rows were kept in a rejected-rows table (``quality.rejected_events`` for raw events)."""

    def summary(self) -> str:
        """A header line, then one line per failed expectation."""
        if self.success:
            return (
                f"suite {self.suite} on {self.target}: all {self.evaluated} expectations passed "
                f"on {self.rows} rows"
            )
        lines = [
            f"suite {self.suite} on {self.target}: {len(self.failures)} of {self.evaluated} expectations "
            f"failed on {self.rows} rows"
        ]
        lines.extend(f"  - {failure.line()}" for failure in self.failures)
        return "\n".join(lines)


def quality_error(report: QualityReport, *, evidence: str = "") -> DataQualityError:
    """The error of a failed suite: the whole report in its message, the first failure in its fields."""
    lines = [f"Data quality check failed: {report.summary()}"]
    with_rows = [f for f in report.failures if f.offending_rows]
    if with_rows:
        lines.append("Offending rows (first few per expectation):")
        for failure in with_rows:
            where = f" on {failure.column}" if failure.column else ""
            lines.append(f"  {failure.expectation}{where}:")
            lines.extend(f"    {format_row(row)}" for row in failure.offending_rows)
    if evidence:
        lines.append(f"Evidence: {evidence}")
    first = report.failures[0] if report.failures else None
    return DataQualityError(
        "\n".join(lines),
        report=report,
        check=f"{report.suite}: {first.description or first.expectation}" if first else report.suite,
        columns=list(dict.fromkeys(f.column for f in report.failures if f.column)),
        observed=first.observed if first else "",
        expected=first.kwargs if first else "",
        evidence=evidence or report.target,
    )


def missing_tables_report(suite: str, target: str, tables: Sequence[str], where: str) -> QualityReport:
    """The report of a suite whose input tables do not exist (nothing could be validated)."""
    failures = tuple(
        ExpectationFailure(
            expectation="table_exists",
            column=None,
            kwargs="",
            observed=f"{table} does not exist in {where}",
            unexpected_count=None,
            element_count=None,
            sample=[],
            offending_rows=[],
        )
        for table in tables
    )
    return QualityReport(
        suite=suite, target=target, success=False, evaluated=len(failures), failures=failures, rows=0
    )
