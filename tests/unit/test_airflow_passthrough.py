"""``recflow airflow …`` refuses, in one line and before Airflow starts, a DAG id a letter or two from
one of the project's and a run conf that is not a JSON object, both of which Airflow answers with a
traceback; everything else reaches Airflow unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.api.common.trigger_dag import _normalize_conf

from recflow import cli
from recflow.core.config import Settings


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["dags", "test", "recsys_warehose", "2026-01-03"], "recsys_warehouse"),
        (["dags", "trigger", "recsys_train_and_publsh"], "recsys_train_and_publish"),
        (["dags", "unpause", "recsys-warehouse"], "recsys_warehouse"),
    ],
)
def test_a_misspelled_dag_id_is_named_with_the_one_meant(
    airflow_started: list[list[str]], capsys: pytest.CaptureFixture[str], argv: list[str], meant: str
) -> None:
    assert cli.main(["airflow", *argv]) == 2
    assert airflow_started == [], "Airflow never starts"
    said = capsys.readouterr().err
    assert said.count("\n") == 1, said
    assert f"no DAG {argv[2]!r} in this project: did you mean {meant}?" in said
    dags_folder = Path(__file__).resolve().parents[2] / "dags"
    for dag_file in dags_folder.glob("*.py"):  # the ids offered are the DAG files' own
        assert dag_file.stem in said


@pytest.mark.parametrize(
    "argv",
    [
        ["dags", "test", "recsys_warehouse", "2026-01-03"],  # ours
        ["dags", "trigger", "someone_elses_dag"],  # far from ours: Airflow says whether it exists
        ["dags", "pause", "recsys_.*", "--treat-dag-id-as-regex", "--yes"],
        ["dags", "list-import-errors"],
        ["tasks", "test", "recsys_warehose", "audit"],  # only `dags` commands are read
    ],
)
def test_everything_else_reaches_airflow_unchanged(airflow_started: list[list[str]], argv: list[str]) -> None:
    assert cli.main(["airflow", *argv]) == 0
    assert airflow_started == [argv]


def test_a_dag_of_the_deployments_own_near_ours_is_not_taken_for_a_misspelling(
    airflow_started: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dags = tmp_path / "dags"
    (dags / "regions").mkdir(parents=True)
    (dags / "regions" / "eu.py").write_text('with DAG(dag_id="recsys_warehouse_eu"):\n    pass\n')
    monkeypatch.setattr(Settings, "dags_dir", property(lambda self: dags))
    argv = ["dags", "trigger", "recsys_warehouse_eu"]
    assert cli.main(["airflow", *argv]) == 0
    assert airflow_started == [argv]
    assert cli.main(["airflow", "dags", "trigger", "recsys_warehouse_us"]) == 2, "not named there"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["-c", "{bad"],
            "'{bad' is not JSON (Expecting property name enclosed in double quotes, at character 2)",
        ),
        (["--conf", "[1]"], "'[1]' is an array, not a JSON object"),
        (["--conf={'a': 1}"], "\"{'a': 1}\" is not JSON"),
        (["-c", '"full"'], "'\"full\"' is a string, not a JSON object"),
        (["-c", "7"], "'7' is a number, not a JSON object"),
    ],
)
@pytest.mark.parametrize("verb", ["test", "trigger"])
def test_a_conf_airflow_would_refuse_is_refused_before_it_starts(
    airflow_started: list[list[str]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
    verb: str,
) -> None:
    conf = argv[-1].removeprefix("--conf=")
    with pytest.raises((ValueError, json.JSONDecodeError)):  # what Airflow does with it, after starting
        _normalize_conf(conf)
    assert cli.main(["airflow", "dags", verb, "recsys_train_and_publish", *argv]) == 2
    assert airflow_started == []
    said = capsys.readouterr().err
    assert said.count("\n") == 1, said
    assert says in said
    assert """the run's conf is a JSON object of the DAG's params by name, e.g. """ in said


@pytest.mark.parametrize("conf", ['{"seed": 8}', "{}", "null"])
def test_a_conf_airflow_takes_reaches_it(airflow_started: list[list[str]], conf: str) -> None:
    _normalize_conf(conf)  # Airflow takes it
    argv = ["dags", "trigger", "recsys_train_and_publish", "--conf", conf]
    assert cli.main(["airflow", *argv]) == 0
    assert airflow_started == [argv]
