"""``recflow airflow …`` refuses, in one line and before Airflow starts, a DAG id a letter or two from
one of the project's and a run conf that is not a JSON object, both of which Airflow answers with a
traceback; everything else reaches Airflow unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from airflow.api.common.trigger_dag import _normalize_conf

from recflow import cli
from recflow.cli import passthrough
from recflow.core.config import Settings, subprocess_env


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["dags", "test", "recsys_warehose", "2026-01-03"], "recsys_warehouse"),
        (["dags", "trigger", "recsys_train_and_publsh"], "recsys_train_and_publish"),
        (["dags", "unpause", "recsys-warehouse"], "recsys_warehouse"),
        (["dags", "test", "recsys_warehouses"], "recsys_warehouse"),  # no separator: a typo, not an extension
        (["dags", "trigger", "recsys_warehouse_"], "recsys_warehouse"),
        (["dags", "test", "-c", "{}", "recsys_warehose"], "recsys_warehouse"),  # options before the id
    ],
)
def test_a_misspelled_dag_id_is_named_with_the_one_meant(
    airflow_started: list[list[str]], capsys: pytest.CaptureFixture[str], argv: list[str], meant: str
) -> None:
    assert cli.main(["airflow", *argv]) == 2
    assert airflow_started == [], "Airflow never starts"
    said = capsys.readouterr().err
    assert said.count("\n") == 1, said
    typo = next(word for word in argv[2:] if word.startswith("recsys"))
    assert f"no DAG {typo!r} in this project: did you mean {meant}?" in said
    assert "for a DAG of your own by that id, give its file with -f" in said
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
        ["dags", "trigger", "recsys_warehouse_v2"],  # extends one of ours: a deployment's own
        ["dags", "test", "--conf", "{}", "recsys_warehouse"],  # options before the id
        ["dags", "test", "recsys_warehous", "-f", "/elsewhere/dag.py"],  # a DAG file of its own
        ["dags", "test", "recsys_warehous", "--bundle-name=other"],  # a bundle of its own
        ["dags", "test", "recsys_warehouse", "-c", ""],  # dags test reads an empty conf as none
        ["dags", "test", "../../elsewhere", "2026-01-03"],  # no DAG id: Airflow says so, no lock named so
    ],
)
def test_everything_else_reaches_airflow_unchanged(
    airflow_started: list[list[str]], tmp_path: Path, argv: list[str]
) -> None:
    (tmp_path / "home" / "airflow").mkdir(parents=True)  # set up: a dags test takes its lock
    assert cli.main(["airflow", *argv]) == 0
    assert airflow_started == [argv]
    assert not list(tmp_path.rglob("*elsewhere*")), "no file is named after what is no DAG id"


@pytest.mark.parametrize("where", ["the project's folder", "AIRFLOW__CORE__DAGS_FOLDER"])
def test_a_dag_of_the_deployments_own_near_ours_is_not_taken_for_a_misspelling(
    airflow_started: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A DAG id near one of ours that a file of the DAGs folder Airflow is given names is the
    deployment's own: the project's `dags/`, or the folder the caller's environment gives Airflow."""
    dags = tmp_path / "dags"
    (dags / "regions").mkdir(parents=True)
    (dags / "regions" / "eu.py").write_text('with DAG(dag_id="eu_recsys_warehouse"):\n    pass\n')
    if where == "AIRFLOW__CORE__DAGS_FOLDER":
        monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    else:
        monkeypatch.setattr(Settings, "dags_dir", property(lambda self: dags))
    argv = ["dags", "trigger", "eu_recsys_warehouse"]
    assert cli.main(["airflow", *argv]) == 0
    assert airflow_started == [argv]
    assert cli.main(["airflow", "dags", "trigger", "us_recsys_warehouse"]) == 2, "not named there"


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
    with pytest.raises((ValueError, json.JSONDecodeError)):  # what `dags trigger` does with it, started
        _normalize_conf(conf)  # (for `dags test` the same rule is recflow's: params are named)
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


STARTS_A_DAGS_TEST = textwrap.dedent(
    """
    import sys
    from recflow import cli
    from recflow.stack import services
    services.airflow_executable = lambda: sys.argv[1]
    sys.exit(cli.main(["airflow", "dags", "test", "recsys_warehouse", "2026-01-03"]))
    """
)


def test_a_second_dags_test_of_a_dag_running_in_the_home_is_refused_until_the_first_ends(
    airflow_started: list[list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A first `dags test recsys_warehouse` runs in another process (Airflow's CLI a stand-in that writes
    its pid and sleeps); a second of the same DAG in the same home is refused with the first's pid, one
    of the other DAG starts, and once the first is killed the second starts too."""
    home = tmp_path / "home"
    (home / "airflow").mkdir(parents=True)
    (home / "airflow" / "airflow.db").touch()  # the embedded metadata database's place: set up
    pid_file = tmp_path / "airflow.pid"
    fake = tmp_path / "airflow"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nwhile true; do sleep 0.1; done\n")
    fake.chmod(0o755)
    env = subprocess_env({"RECFLOW_HOME": str(home)})
    first = subprocess.Popen(
        [sys.executable, "-c", STARTS_A_DAGS_TEST, str(fake)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text().strip()):  # its airflow has started
            assert time.monotonic() < deadline and first.poll() is None, "the first dags test never started"
            time.sleep(0.05)
        second = ["dags", "test", "recsys_warehouse", "2026-01-04"]
        assert cli.main(["airflow", *second]) == 2
        said = capsys.readouterr().err
        assert said.count("\n") == 1, said
        assert (
            f"a `dags test recsys_warehouse` already runs for RECFLOW_HOME={home} (pid {first.pid}; "
            f"`kill {first.pid}` stops it)"
        ) in said
        other = ["dags", "test", "recsys_train_and_publish"]
        assert cli.main(["airflow", *other]) == 0
        assert airflow_started == [other]
    finally:
        first.kill()
        first.wait(timeout=30)
    assert cli.main(["airflow", *second]) == 0, "a killed holder's lock is released by the kernel"
    assert airflow_started == [other, second]


def test_ctrl_c_reaches_a_caller_of_main_in_its_own_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the `recflow` command itself ends by SIGINT on Ctrl-C (test_airflow_stops_with_recflow.py);
    a caller of `cli.main` in its own process (a test) gets its KeyboardInterrupt, and lives on."""

    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(passthrough, "run_airflow", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["airflow", "dags", "list"])
