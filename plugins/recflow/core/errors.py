"""The one exceptions module of recflow: every error the pipeline raises on purpose.

The failure callback classifies a failed task by the *type* of its exception
(``isinstance``), never by the class's name:

- :class:`DataVerdict` — the pipeline's verdict on data: the input broke a rule.
  It carries the check, the columns, what was observed against what was expected
  and where the evidence is (a query on the quarantine, a file). Retrying does not
  help; fixing the data (or, deliberately, the rule) does.
- :class:`TrainingJobFailed` — a training job ended ``Failed`` or ``Stopped``;
  ``kind`` says how (an exception in the algorithm, killed by a signal, past its
  maximum runtime, stopped by a person, the platform's own error).
- anything else that derives from :class:`RecflowError` is a fault of the
  pipeline's own machinery or configuration; an exception of any other type is an
  infrastructure fault (a lock, the network, a bug).

What to do about each is written once, in ``docs/runbooks/<dag>.md``; an error
names its section (``runbook``), the failure callback quotes it.

``retryable`` says whether another try of the same task can end otherwise. A verdict
(a data verdict, refused params, an unusable setting, a training job that failed for a
reason of its own) is not: the task fails at once and pages, instead of repeating the
same refusal ``retries`` times later (``recflow.airflow.defaults.RETRY_POLICY``). Every
other failure keeps the task's retries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, Final, Literal


class RecflowError(Exception):
    """Base of every error recflow raises on purpose.

    ``runbook`` is the anchor of the section of ``docs/runbooks/<dag>.md`` that says
    what to do (for example ``partition-refused``); empty means "the task's own section".
    """

    runbook: str = ""
    retryable: bool = True
    """Whether another try of the task may succeed without anyone changing anything."""

    def __init__(self, message: str, *, runbook: str | None = None) -> None:
        super().__init__(message)
        if runbook is not None:
            self.runbook = runbook

    def __reduce__(self) -> Any:
        # keep the keyword-only state across pickling (Airflow ships exceptions between processes)
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


UNREACHABLE: Final = (
    "TTransportException",  # PyHive's Thrift client: the Spark Thrift server is not there
    "Could not connect to any of",
    "Connection refused",
    "connection to server at",  # libpq 17: 'connection to server at "h" (ip), port 5432 failed: …'
    "connection to server on socket",
    "could not connect to server",  # older libpq
    "could not translate host name",
    "No route to host",
    "failed to connect",  # dbt's words for its adapter's
)
"""Words of an error that mean a server (the warehouse's, mostly) could not be reached, in any
driver's or in dbt's wording of them: the task's default section (``dbt-failed``, ``snapshot-empty``)
is about the data or the code, and would send on-call the wrong way."""


_QUOTED_SQL = re.compile(r"\n\s*(?:LINE \d+:|== SQL)")
"""Where an engine's message starts quoting the statement (DuckDB's and PostgreSQL's ``LINE n:``,
Spark's ``== SQL ==``): a string literal there says nothing about a server."""
_STAGE_FAILURE = "Job aborted due to stage failure"
"""Spark's executors failing a job (a shuffle fetch refused between executors, say): the warehouse's
server answered."""


def says_unreachable(text: str) -> bool:
    """Whether an error's text says a server could not be reached (:data:`UNREACHABLE`), before any
    statement it quotes, and not about a Spark job its executors failed."""
    said = _QUOTED_SQL.split(text, maxsplit=1)[0]
    return _STAGE_FAILURE not in said and any(words in said for words in UNREACHABLE)


def unreachable_line(text: str) -> str:
    """The line of an error's text that says a server could not be reached (dbt's first line is only
    ``Database Error``); its first line when none does."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return next((line for line in lines if says_unreachable(line)), lines[0] if lines else "")


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none): a driver's message may
    run to a hint or a traceback of the server's."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _rebuild(cls: type[RecflowError], message: str, state: dict[str, Any]) -> RecflowError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigError(RecflowError, ValueError):
    """A setting has a value recflow cannot use; the message names the variable. ``invalid``: the
    environment variables whose values were refused, where the error comes from reading them."""

    runbook = "configuration"
    retryable = False  # the workers must be restarted with a fixed environment first

    def __init__(self, message: str, *, runbook: str | None = None, invalid: tuple[str, ...] = ()) -> None:
        super().__init__(message, runbook=runbook)
        self.invalid = invalid


class ParamsError(RecflowError, ValueError):
    """A run's params break their schema; the message names the param, the value and the rule."""

    runbook = "params-refused"
    retryable = False


class DataVerdict(RecflowError):
    """The pipeline refused data: a rule on the input did not hold.

    ``check`` is the rule's name, ``columns`` the columns it is about, ``observed``
    and ``expected`` the figures in words, ``evidence`` where to look (a SQL query on
    the quarantine, a file path). Never retried: the same data gets the same verdict.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        check: str,
        columns: Sequence[str] = (),
        observed: str = "",
        expected: str = "",
        evidence: str = "",
        runbook: str | None = None,
    ) -> None:
        super().__init__(message, runbook=runbook)
        self.check = check
        self.columns = tuple(columns)
        self.observed = observed
        self.expected = expected
        self.evidence = evidence


class ContractViolation(DataVerdict):
    """A landing file or partition breaks ``docs/data-contract.md`` (shape, type, encoding, catalogue keys)."""

    runbook = "landing-contract"


class PartitionRefused(DataVerdict):
    """The audit refused a whole day: too many quarantined rows, or a volume outside the recent range.
    ``ds``: the day; ``share_needed``: the least ``max_quarantine_share`` (in hundredths) that accepts
    its quarantined rows, when their share was why (the runbook's accept command, filled in)."""

    runbook = "partition-refused"

    def __init__(
        self, message: str, *, ds: str | None = None, share_needed: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.ds = ds
        self.share_needed = share_needed


class DataQualityError(DataVerdict):
    """A Great Expectations suite failed; ``report`` holds every failed expectation."""

    runbook = "marts-invariants"

    def __init__(self, message: str, *, report: Any, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.report = report


class LandingLate(RecflowError):
    """The landing partition (or its ``_SUCCESS`` marker) is not there yet."""

    runbook = "landing-late"


class DayClaimed(RecflowError):
    """Another run holds the day, between its ``land`` and the end of its ``audit``: one run of a day
    at a time, so that no run lands over, or publishes, another's staged day. ``holder`` is that run.
    The message says what to do, with the ``recflow claims release`` command for a holder that is no
    longer running; so does the runbook's section (it is no fault of the data)."""

    runbook = "day-claimed"

    def __init__(self, message: str, *, ds: str, holder: str) -> None:
        super().__init__(message)
        self.ds = ds
        self.holder = holder


class NotStaged(RecflowError):
    """``audit`` found no staged table for its day: another run's publication of the day dropped it
    (``audit`` cleared without ``land``), or ``land`` did not run. Another try finds none either.
    ``ds``: the day (the incident fills it into the runbook's command)."""

    runbook = "not-staged"
    retryable = False

    def __init__(self, message: str, *, ds: str | None = None) -> None:
        super().__init__(message)
        self.ds = ds


class NoUpstreamResult(RecflowError):
    """A task's upstream task succeeded without a result to pass on (a person marked it success in the
    UI, so it never ran). Another try reads the same nothing."""

    runbook = "no-upstream-result"
    retryable = False


class ConservationBroken(RecflowError):
    """The rows written for a day (published and quarantined) are not exactly the rows it landed: the
    audit's transaction was rolled back and nothing was published. A fault of the pipeline, not of the data."""

    def __init__(self, message: str, *, ds: str, landed: int, accepted: int, quarantined: int) -> None:
        super().__init__(message, runbook="infrastructure")
        self.ds = ds
        self.landed = landed
        self.accepted = accepted
        self.quarantined = quarantined


class WarehouseUnavailable(RecflowError):
    """A server warehouse (PostgreSQL, Spark's Thrift server) could not be opened: down, unreachable,
    or refusing the login or the database. The message names the address and where it came from;
    another try may find the server back, so the task keeps its retries."""

    runbook = "infrastructure"


class EngineFailed(RuntimeError):
    """The warehouse's engine failed a statement (on Spark: an executor lost, out of memory, a table
    that does not exist). Not a :class:`RecflowError`: its kind is ``infrastructure`` and the task keeps
    its retries. ``missing_table``: the statement read a table that does not exist, which is what the
    sections about missing data (the snapshot's) are for; any other failure is the engine's machinery."""

    @property
    def missing_table(self) -> bool:
        return False


class DbtNodeFailed(RecflowError):
    """A dbt node of the run's build failed (its SQL, or one of its tests), or the build ended before it
    ran. ``node`` is the model, seed or test the failing task is named after, ``failed`` the dbt nodes
    (``unique_id``) that failed or have no result. Its task is not retried: it reports the build's
    result, and another try would read the same one (the runbook says what to clear).

    ``paged_by`` names the task whose own failure pages for this one, when there is one: the build,
    when every node of the task failed because the build lost the warehouse (the build fails for it
    and pages). The node's incident is recorded and its ``ON-CALL:`` line written, but not sent: one
    lost warehouse pages once, not once per node."""

    runbook = "dbt-failed"
    retryable = False

    def __init__(
        self, message: str, *, node: str, failed: Sequence[str], paged_by: str | None = None
    ) -> None:
        super().__init__(message)
        self.node = node
        self.failed = tuple(failed)
        self.paged_by = paged_by


TrainingFailureKind = Literal["algorithm", "killed", "max_runtime", "stopped", "client", "internal"]


class TrainingJobError(RecflowError):
    """Base of the errors about training jobs."""


class TrainingJobFailed(TrainingJobError):
    """A training job ended ``Failed`` or ``Stopped``; ``kind`` classifies how, ``reason`` is its FailureReason."""

    RUNBOOKS: ClassVar[dict[str, str]] = {
        "algorithm": "job-algorithm-error",
        "killed": "job-killed",
        "max_runtime": "job-max-runtime",
        "stopped": "job-stopped",
        "client": "job-input-error",
        "internal": "job-internal-error",
    }

    RETRYABLE: ClassVar[frozenset[str]] = frozenset({"internal", "max_runtime"})
    """The kinds another attempt may end otherwise: the platform's own failure, and a job stopped at its
    maximum runtime (the next attempt resumes from its checkpoints). An exception in the algorithm,
    a kill (the OOM killer, on the same data, params and instance), a refused request (image, role,
    quota) and a person's stop repeat or must not be undone: they page at once."""

    def __init__(self, name: str, status: str, reason: str, kind: TrainingFailureKind = "internal") -> None:
        super().__init__(f"training job {name} {status}: {reason}", runbook=self.RUNBOOKS[kind])
        self.name = name
        self.status = status
        self.reason = reason
        self.kind = kind

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.kind in self.RETRYABLE


class TrainingJobNotFound(TrainingJobError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"training job {name!r} does not exist", runbook="job-internal-error")
        self.name = name


class TrainingJobExists(TrainingJobError, ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"training job {name!r} already exists (job names are unique)", runbook="job-internal-error"
        )
        self.name = name


class RegistryError(RecflowError):
    """The model registry refused an operation or holds an inconsistent state; the message says which."""

    runbook = "publish-failed"
