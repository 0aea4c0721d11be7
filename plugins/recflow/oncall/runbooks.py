"""The runbooks, read from ``docs/runbooks/<dag_id>.md``: what to do when a task fails.

Each file is an overview (what the DAG does, its tasks) followed by one ``## <Title>``
section per failure cause. A section's anchor is its title's GitHub slug
(``## Partition refused`` → ``partition-refused``); errors name it in their
``runbook`` attribute, and the section's paragraph that starts with
``**What to do:**`` is what the failure callback quotes. The DAG files use
:func:`dag_doc` as their ``doc_md``, so this module is imported while DAGs are
parsed: it imports nothing heavy.
"""

from __future__ import annotations

import posixpath
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from recflow.core import names
from recflow.core.config import PROJECT_ROOT
from recflow.core.errors import EngineFailed, RecflowError, says_unreachable

RUNBOOKS_DIR = PROJECT_ROOT / "docs" / "runbooks"
INFRASTRUCTURE = "infrastructure"
WHAT_TO_DO = "**What to do:**"

TASK_DEFAULTS: dict[str, str] = {
    names.WAIT_FOR_LANDING: "landing-late",
    names.TRANSFORM: "dbt-failed",
    names.SNAPSHOT: "snapshot-empty",
    names.EVALUATE: "evaluate-failed",
    names.PUBLISH: "publish-failed",
}
"""The section for a task's failure when the error names none: a sensor timeout, a dbt
build that could not run, an MLflow or artifact-store error. Keyed by the task id, or by its task group
(``transform`` for ``transform.<dbt node>``). The other tasks fail with errors that name their
section; anything else there is an infrastructure fault.
"""

NO_EXCEPTION: dict[str, str] = {names.TRAIN: "job-stopped"}
"""The section when a task ended without an exception (killed, or marked failed by a person)."""


@dataclass(frozen=True)
class Section:
    """One failure cause of a runbook: its title, its whole text and its "What to do" paragraph."""

    anchor: str
    title: str
    text: str
    what_to_do: str


@dataclass(frozen=True)
class Runbook:
    dag_id: str
    path: Path
    title: str
    overview: str
    sections: dict[str, Section]


def slug(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def path_for(dag_id: str) -> Path:
    return RUNBOOKS_DIR / f"{dag_id}.md"


def relative_path(dag_id: str) -> str:
    """The runbook's path from the repository root, as on-call messages and links name it."""
    return f"docs/runbooks/{dag_id}.md"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _what_to_do(body: str) -> str:
    for paragraph in re.split(r"\n\s*\n", body):
        stripped = paragraph.strip()
        if stripped.startswith(WHAT_TO_DO):
            return _one_line(stripped.removeprefix(WHAT_TO_DO))
    return ""


def parse(dag_id: str, text: str, path: Path | None = None) -> Runbook:
    """Split a runbook into its overview and its ``## `` sections (headings inside code fences are text)."""
    title = dag_id
    chunks: list[tuple[str, list[str]]] = [("", [])]
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("# ") and not chunks[0][1] and len(chunks) == 1:
            title = line[2:].strip()
            continue
        if not fenced and line.startswith("## "):
            chunks.append((line[3:].strip(), []))
            continue
        chunks[-1][1].append(line)
    sections: dict[str, Section] = {}
    for heading, lines in chunks[1:]:
        body = "\n".join(lines).strip()
        anchor = slug(heading)
        if anchor in sections:
            raise ValueError(f"{path or dag_id}: two sections have the anchor #{anchor}")
        sections[anchor] = Section(anchor=anchor, title=heading, text=body, what_to_do=_what_to_do(body))
    return Runbook(
        dag_id=dag_id,
        path=path or path_for(dag_id),
        title=title,
        overview="\n".join(chunks[0][1]).strip(),
        sections=sections,
    )


@cache
def load(dag_id: str) -> Runbook:
    """The runbook of ``dag_id``; ``FileNotFoundError`` when the DAG has none."""
    path = path_for(dag_id)
    return parse(dag_id, path.read_text(encoding="utf-8"), path)


def dag_doc(dag_id: str) -> str:
    """The DAG's ``doc_md``: the runbook's overview and a pointer to the failure causes."""
    book = load(dag_id)
    causes = ", ".join(f"`{anchor}`" for anchor in book.sections)
    return (
        f"# {book.title}\n\n{_unlinked(book.overview, dag_id)}\n\n"
        f"**Runbook:** `{relative_path(dag_id)}`, one section per failure cause: {causes}. "
        "The `ON-CALL:` line of a failed task names its section.\n"
    )


_LINK = re.compile(r"\[([^][\n]+)\]\(([^)\s]+)\)")


def _unlinked(text: str, dag_id: str) -> str:
    """``text`` with each relative Markdown link written out as what it points to: a section of this
    runbook as its anchor (``[landing-late](#landing-late)`` → ```#landing-late```, which the page's
    last line says is in ``docs/runbooks/<dag>.md``), another file as its path in the repository
    (``[benchmarks](../benchmarks.md)`` → ``benchmarks (`docs/benchmarks.md`)``). The Airflow UI shows
    ``doc_md`` on a page of its own, where a link relative to the runbook's file leads nowhere; links
    with a scheme stay links."""

    def written_out(link: re.Match[str]) -> str:
        label, target = link.groups()
        if "://" in target or target.startswith("mailto:"):
            return link.group(0)
        path, _, anchor = target.partition("#")
        if not path:
            return f"`#{anchor}`" if label == anchor else f"{label} (`#{anchor}`)"
        where = posixpath.normpath(posixpath.join(posixpath.dirname(relative_path(dag_id)), path))
        return f"{label} (`{where}{'#' + anchor if anchor else ''}`)"

    return _LINK.sub(written_out, text)


def section(dag_id: str, anchor: str) -> Section:
    """The section ``#anchor`` of the DAG's runbook; ``KeyError`` names the anchors there are."""
    book = load(dag_id)
    try:
        return book.sections[anchor]
    except KeyError:
        raise KeyError(
            f"{relative_path(dag_id)} has no section #{anchor} (it has: {', '.join(book.sections)})"
        ) from None


def task_default(task_id: str) -> str | None:
    """The per-task default section: by task id, else by its task group (``transform.x`` → ``transform``)."""
    return TASK_DEFAULTS.get(task_id) or TASK_DEFAULTS.get(task_id.split(".", 1)[0])


def anchor_for(task_id: str, error: BaseException | None) -> str:
    """The section for ``error`` raised by ``task_id``.

    The error's own ``runbook`` when it is a :class:`~recflow.core.errors.RecflowError`
    naming one (or is raised ``from`` one, as ``AirflowFailException`` wrappers are);
    ``warehouse-locked`` for DuckDB's lock error; else the task's default; else
    ``infrastructure``.
    """
    cause = recflow_cause(error)
    if cause is not None and cause.runbook:
        return INFRASTRUCTURE if lost_the_server(cause) else cause.runbook
    if error is None:
        return NO_EXCEPTION.get(task_id) or task_default(task_id) or INFRASTRUCTURE
    if is_warehouse_lock(error):
        return "warehouse-locked"
    default = task_default(task_id)
    if default in ABOUT_THE_DATA_OR_CODE and (is_unreachable(error) or is_engine_failure(error)):
        return INFRASTRUCTURE
    return default or INFRASTRUCTURE


ABOUT_THE_DATA_OR_CODE: Final = frozenset({"dbt-failed", "snapshot-empty"})
"""Task defaults whose advice is about the data or the code ("fix the model", "the warehouse has not
produced the mart"): a server that cannot be reached, or an engine that failed a statement for
another reason than a missing table, is sent to infrastructure instead. The other
defaults name their unreachable servers themselves (publish-failed: the MLflow store)."""


def lost_the_server(cause: RecflowError) -> bool:
    """Whether recflow's own error is about the data or the code (a dbt node's failure) but says a
    server could not be reached: a dbt node that lost the warehouse, the build's retries spent. Its
    section and its kind are infrastructure's, not the model's."""
    return cause.runbook in ABOUT_THE_DATA_OR_CODE and is_unreachable(cause)


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error``, or one it was raised from (``raise … from``), says a server could not be
    reached. Not one it was raised while handling: a data error after a failed connection is the data's."""
    return any(says_unreachable(f"{type(current).__name__}: {current}") for current in _causes(error))


def is_engine_failure(error: BaseException) -> bool:
    """Whether ``error``, or one it was raised from, is the warehouse engine failing a statement for a
    reason of its own (an executor lost, out of memory), not because a table does not exist."""
    return any(isinstance(current, EngineFailed) and not current.missing_table for current in _causes(error))


def is_warehouse_lock(error: BaseException) -> bool:
    """DuckDB refused to open the warehouse file because another process holds it: ``error``, or one it
    was raised from (the dbt build's "could not run the build" is raised from DuckDB's)."""
    duckdb = sys.modules.get("duckdb")  # an error of DuckDB's exists only where duckdb is imported
    io_error = getattr(duckdb, "IOException", None)
    return isinstance(io_error, type) and any(
        isinstance(current, io_error) and "lock" in str(current).lower() for current in _causes(error)
    )


def recflow_cause(error: BaseException | None) -> RecflowError | None:
    """``error`` itself when it is a RecflowError, else the first RecflowError in its ``raise ... from`` chain."""
    return next((current for current in _causes(error) if isinstance(current, RecflowError)), None)


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    """``error``, then each error it was raised from (``raise … from``), each once."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        yield error
        seen.add(id(error))
        error = error.__cause__
