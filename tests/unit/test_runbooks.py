"""The runbooks: every anchor an error or a task names exists, and says what to do."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from recflow.core import errors
from recflow.core.config import PROJECT_ROOT
from recflow.oncall import runbooks

WAREHOUSE = "recsys_warehouse"
TRAINING = "recsys_train_and_publish"
DAGS = (WAREHOUSE, TRAINING)

REQUIRED = {
    WAREHOUSE: {
        "landing-late",
        "landing-contract",
        "partition-refused",
        "dbt-failed",
        "marts-invariants",
        "warehouse-locked",
        "not-staged",
        "day-claimed",
        "infrastructure",
        "configuration",
    },
    TRAINING: {
        "snapshot-empty",
        "warehouse-locked",  # snapshot reads the DuckDB file
        "params-refused",
        "job-algorithm-error",
        "job-killed",
        "job-max-runtime",
        "job-stopped",
        "job-input-error",
        "job-internal-error",
        "evaluate-failed",
        "publish-failed",
        "not-promoted",
        "rollback",
        "infrastructure",
        "configuration",
    },
}

TASKS = {
    WAREHOUSE: ("wait_for_landing", "land", "audit", "transform.stg_events_model_build", "check_marts"),
    TRAINING: ("snapshot", "train", "evaluate", "gate", "publish"),
}

OWNERS = {
    "configuration": DAGS,
    "params-refused": DAGS,
    "landing-late": (WAREHOUSE,),
    "landing-contract": (WAREHOUSE,),
    "partition-refused": (WAREHOUSE,),
    "day-claimed": (WAREHOUSE,),
    "not-staged": (WAREHOUSE,),
    "marts-invariants": (WAREHOUSE,),
    "dbt-failed": (WAREHOUSE,),
    "job-algorithm-error": (TRAINING,),
    "job-killed": (TRAINING,),
    "job-max-runtime": (TRAINING,),
    "job-stopped": (TRAINING,),
    "job-input-error": (TRAINING,),
    "job-internal-error": (TRAINING,),
    "publish-failed": (TRAINING,),
    "no-upstream-result": (TRAINING,),
    "infrastructure": (WAREHOUSE, TRAINING),
}
"""Which DAGs raise the errors that name each anchor (so whose runbook must have it)."""


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _anchors_named_in_errors() -> set[str]:
    named = {vars(cls)["runbook"] for cls in _subclasses(errors.RecflowError) if vars(cls).get("runbook")}
    named |= set(errors.TrainingJobFailed.RUNBOOKS.values())
    named |= {errors.TrainingJobNotFound("j").runbook, errors.TrainingJobExists("j").runbook}
    return named


def test_every_anchor_named_in_errors_is_in_the_runbooks_of_the_dags_that_raise_it() -> None:
    named = _anchors_named_in_errors()
    assert named - set(OWNERS) == set(), "a new anchor in recflow/errors.py: say which DAG raises it"
    for anchor in named:
        for dag_id in OWNERS[anchor]:
            assert anchor in runbooks.load(dag_id).sections, f"{dag_id}.md has no #{anchor}"


@pytest.mark.parametrize("dag_id", DAGS)
def test_every_required_section_exists_and_says_what_to_do(dag_id: str) -> None:
    book = runbooks.load(dag_id)
    assert REQUIRED[dag_id] <= set(book.sections), REQUIRED[dag_id] - set(book.sections)
    for anchor, section in book.sections.items():
        assert runbooks.slug(section.title) == anchor
        assert len(section.what_to_do) > 40, f"{dag_id}.md#{anchor} has no **What to do:** paragraph"
        assert "\n" not in section.what_to_do
        assert section.text.startswith("**Symptom:**"), (
            f"{dag_id}.md#{anchor} does not start with the symptom"
        )
        assert "**Cause:**" in section.text, f"{dag_id}.md#{anchor} does not say the cause"


@pytest.mark.parametrize("dag_id", DAGS)
def test_every_task_default_exists_in_its_dags_runbook(dag_id: str) -> None:
    sections = runbooks.load(dag_id).sections
    for task_id in TASKS[dag_id]:
        for error in (None, RuntimeError("boom")):
            anchor = runbooks.anchor_for(task_id, error)
            assert anchor in sections, f"{dag_id}.{task_id} points to #{anchor}, not in {dag_id}.md"
    groups = {task_id.split(".", 1)[0] for task_id in TASKS[dag_id]}
    for task, anchor in {**runbooks.TASK_DEFAULTS, **runbooks.NO_EXCEPTION}.items():
        if task in groups:
            assert anchor in sections


@pytest.mark.parametrize(
    ("title", "anchor"),
    [
        ("Landing late", "landing-late"),
        ("dbt failed", "dbt-failed"),
        ("Job: max runtime", "job-max-runtime"),
        ("Job: algorithm error", "job-algorithm-error"),
        ("`recflow` (CLI) rollback!", "recflow-cli-rollback"),
    ],
)
def test_anchors_are_github_slugs(title: str, anchor: str) -> None:
    assert runbooks.slug(title) == anchor


def test_the_anchor_comes_from_the_error_then_the_task_then_infrastructure() -> None:
    refused = errors.PartitionRefused("2% quarantined", check="quarantine_share")
    assert runbooks.anchor_for("audit", refused) == "partition-refused"
    job = errors.TrainingJobFailed("j", "Failed", "OutOfMemory: peak 9 GB", kind="killed")
    assert runbooks.anchor_for("train", job) == "job-killed"
    try:
        try:
            raise errors.ContractViolation("column 'x' is missing", check="columns")
        except errors.ContractViolation as exc:
            raise RuntimeError("task failed") from exc
    except RuntimeError as wrapped:
        assert runbooks.anchor_for("land", wrapped) == "landing-contract"
    assert runbooks.anchor_for("transform.stg_events_model_build", RuntimeError("dbt")) == "dbt-failed"
    assert runbooks.anchor_for("wait_for_landing", RuntimeError("timed out")) == "landing-late"
    assert runbooks.anchor_for("land", OSError("disk full")) == "infrastructure"
    assert runbooks.anchor_for("train", None) == "job-stopped"
    assert runbooks.anchor_for("gate", None) == "infrastructure"


class TTransportException(Exception):
    """PyHive's Thrift error, as its type is named (the thrift package comes with the Spark packages)."""


def test_a_server_that_cannot_be_reached_points_to_infrastructure_not_the_tasks_section() -> None:
    """The Thrift server down: the dbt build's failure pointed at dbt-failed ('fix the model in a pull
    request'), the snapshot's at snapshot-empty ('the warehouse has not produced the mart'); both are
    the messages seen on the Spark cluster."""
    dbt = RuntimeError(
        "dbt could not run the build (no node ran): Runtime Error; Runtime Error; Database Error; failed to "
        "connect: TTransportException(type=1, message=\"Could not connect to any of [('127.0.0.1', 10000)]\")"
    )
    assert runbooks.anchor_for("transform.dbt_build", dbt) == "infrastructure"
    thrift = TTransportException("Could not connect to any of [('127.0.0.1', 10000)]")
    assert runbooks.anchor_for("snapshot", thrift) == "infrastructure"
    try:  # a driver's error under another
        try:
            raise OSError('connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused')
        except OSError as exc:
            raise ValueError("reading the mart failed") from exc
    except ValueError as wrapped:
        assert runbooks.anchor_for("snapshot", wrapped) == "infrastructure"
    libpq = OSError('connection to server at "db" (10.0.0.5), port 5432 failed: timeout expired')
    assert runbooks.anchor_for("snapshot", libpq) == "infrastructure"
    # a section that names its unreachable server keeps it: publish-failed's cause is the MLflow store
    mlflow_down = ConnectionError("HTTPConnectionPool(host='mlflow', port=5000): Connection refused")
    assert runbooks.anchor_for("publish", mlflow_down) == "publish-failed"
    try:  # a data error raised while handling a failed connection is the data's
        try:
            raise OSError("Connection refused")
        except OSError:
            raise ValueError("analytics.training_interactions has no train rows") from None
    except ValueError as during:
        assert runbooks.anchor_for("snapshot", during) == "snapshot-empty"
    # what the sections are for stays theirs
    assert runbooks.anchor_for(
        "snapshot", ValueError("analytics.training_interactions has no train rows")
    ) == ("snapshot-empty")
    assert (
        runbooks.anchor_for("transform.dbt_build", RuntimeError("Compilation Error in model x"))
        == "dbt-failed"
    )


def test_spark_failing_the_snapshot_for_its_own_reasons_points_to_infrastructure() -> None:
    """The snapshot's section says the warehouse has not produced the mart: right for a table Spark
    does not find, wrong for an executor Spark lost or memory it ran out of."""
    from recflow.warehouse.spark_errors import SparkStatementFailed

    def failed(says: str) -> BaseException:
        try:
            raise SparkStatementFailed(says, "select * from analytics.training_interactions") from OSError(
                "TStatus(...)"
            )
        except SparkStatementFailed as error:
            return error

    lost = failed("Job aborted due to stage failure: ExecutorLostFailure (executor 1 exited)")
    assert runbooks.anchor_for("snapshot", lost) == "infrastructure"
    oom = failed("[SPARK_JOB_CANCELLED] java.lang.OutOfMemoryError: Java heap space")
    assert runbooks.anchor_for("snapshot", oom) == "infrastructure"
    missing = failed(
        "[TABLE_OR_VIEW_NOT_FOUND] The table or view `analytics`.`training_interactions` cannot be found."
    )
    assert runbooks.anchor_for("snapshot", missing) == "snapshot-empty"
    try:  # under a wrapper of the snapshot's
        raise RuntimeError("could not read the mart") from lost
    except RuntimeError as wrapped:
        assert runbooks.anchor_for("snapshot", wrapped) == "infrastructure"
    # sections that are not about the data keep their own
    assert runbooks.anchor_for("publish", lost) == "publish-failed"


def test_a_duckdb_lock_points_to_warehouse_locked() -> None:
    import duckdb

    locked = duckdb.IOException('IO Error: Could not set lock on file "/x/recflow.duckdb": Conflicting lock')
    assert runbooks.anchor_for("land", locked) == "warehouse-locked"
    assert runbooks.anchor_for("land", duckdb.IOException("No such file")) == "infrastructure"
    # the training DAG's snapshot reads the same file: its runbook has the section too
    assert runbooks.anchor_for("snapshot", locked) in runbooks.load(TRAINING).sections


def test_section_names_the_anchors_there_are() -> None:
    assert runbooks.section(WAREHOUSE, "partition-refused").title == "Partition refused"
    with pytest.raises(KeyError, match="has no section #nope"):
        runbooks.section(WAREHOUSE, "nope")


@pytest.mark.parametrize("dag_id", DAGS)
def test_dag_doc_is_the_overview_and_points_to_the_runbook(dag_id: str) -> None:
    doc = runbooks.dag_doc(dag_id)
    assert doc.startswith(f"# {dag_id}\n")
    for task_id in TASKS[dag_id]:
        row = "`transform.*`" if task_id.startswith("transform.") else f"`{task_id}`"
        assert f"| {row} |" in doc, f"the task table has no row for {row}"
    assert f"docs/runbooks/{dag_id}.md" in doc
    assert "**What to do:**" not in doc, "the failure causes stay in the file"


@pytest.mark.parametrize("dag_id", DAGS)
def test_dag_doc_has_no_link_that_leads_nowhere_in_the_ui(dag_id: str) -> None:
    """The UI shows doc_md on a page of its own: the overview's links to the runbook's sections and to
    other docs are written out as anchors and paths, each of which exists."""
    doc = runbooks.dag_doc(dag_id)
    assert re.findall(r"\]\((?![a-z]+://)[^)]*\)", doc) == [], "a relative Markdown link is left"
    overview = runbooks.load(dag_id).overview
    linked = re.findall(r"\]\(#([^)]+)\)", overview)
    assert linked, "the overview links its sections (else this test reads nothing)"
    for anchor in linked:
        assert anchor in runbooks.load(dag_id).sections
        assert f"`#{anchor}`" in doc
    for path in re.findall(r"\(`(docs/[^`#]+)(?:#[^`]*)?`\)", doc):
        assert (PROJECT_ROOT / path).is_file(), path


def test_headings_in_code_fences_are_not_sections() -> None:
    book = runbooks.parse(
        "x",
        "# x\n\nintro\n\n```\n## not a section\n```\n\n## Real one\n\n**Symptom:** s\n\n**What to do:** act\nnow.\n",
    )
    assert list(book.sections) == ["real-one"]
    assert book.sections["real-one"].what_to_do == "act now."
    assert "## not a section" in book.overview


def test_the_docs_index_links_both_runbooks() -> None:
    index = (PROJECT_ROOT / "docs" / "runbooks.md").read_text()
    for dag_id in DAGS:
        assert f"runbooks/{dag_id}.md" in index


def test_importing_runbooks_and_incidents_stays_light() -> None:
    """DAG files import them (doc_md, the failure callback) while they are parsed."""
    code = (
        "import sys, recflow.oncall.runbooks, recflow.oncall.incidents\n"
        "heavy = [m for m in ('airflow', 'mlflow', 'pyarrow', 'pandas', 'duckdb', 'tensorflow') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
