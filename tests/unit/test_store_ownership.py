"""`recflow generate`, `recflow load movielens` and `recflow demo` write their throwaway data only into
stores recflow made.

Each refusal is checked through the command line, on a folder of sentinel files standing for
someone else's store: the command exits 2 naming the setting, and no file there changed
(checksums read back before and after).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import pytest

from recflow.cli import main
from recflow.core.config import Settings, declared_settings
from recflow.stack.demo import claim_demo_stores

DAY = date(2026, 1, 1)
GENERATE = [
    "generate",
    "--days",
    "1",
    "--end",
    DAY.isoformat(),
    "--users",
    "20",
    "--pins",
    "30",
    "--topics",
    "3",
]
DEMO = ["demo", "--days", "1", "--users", "20", "--pins", "30"]
MARKER = ".recflow-owned"
"""What recflow leaves in a store it made (``recflow.core.ownership.MARKER``)."""


def checksums(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def producers_zone(folder: Path) -> dict[str, str]:
    """A landing zone a producer wrote (a day's partition with its marker, the catalogues); its checksums."""
    day = folder / "events" / f"ds={DAY.isoformat()}"
    day.mkdir(parents=True)
    (day / "part-00000.parquet").write_bytes(b"the producer's events of the day")
    (day / "_SUCCESS").touch()
    for name in ("pins", "users"):
        (folder / name).mkdir()
        (folder / name / f"{name}.parquet").write_bytes(f"the producer's {name}".encode())
    return checksums(folder)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No setting of the caller's environment leaks in; RECFLOW_HOME is a fresh folder under tmp_path."""
    for setting in declared_settings():
        monkeypatch.delenv(setting.env.name, raising=False)
    for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    return monkeypatch


def test_generate_refuses_a_landing_zone_it_did_not_create(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = tmp_path / "shared-landing"
    before = producers_zone(shared)
    env.setenv("RECFLOW_LANDING_DIR", str(shared))
    assert main(GENERATE) == 2
    err = capsys.readouterr().err
    assert f"RECFLOW_LANDING_DIR={shared}" in err and "empty or recflow-created folder" in err
    assert checksums(shared) == before


def test_load_movielens_refuses_a_landing_zone_it_did_not_create(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It replaces a day's partition and the catalogues as generate does, so it claims the zone first."""
    data = tmp_path / "ml-100k"
    data.mkdir()
    for name in ("ratings.train.tsv", "u.item", "u.user", "u.genre"):
        (data / name).write_text("")  # the refusal comes before a line is read
    shared = tmp_path / "shared-landing"
    before = producers_zone(shared)
    env.setenv("RECFLOW_LANDING_DIR", str(shared))
    assert main(["load", "movielens", "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert "recflow load movielens refused" in err and f"RECFLOW_LANDING_DIR={shared}" in err, err
    assert checksums(shared) == before


def test_a_refused_setting_or_folder_leaves_no_marker(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command refused for its arguments has not claimed the landing zone it would have written."""
    landing = tmp_path / "landing"
    env.setenv("RECFLOW_LANDING_DIR", str(landing))
    for days in ("0", "100000"):  # refused by the parser, naming --days
        with pytest.raises(SystemExit) as refused:
            main([*GENERATE[:1], "--days", days, *GENERATE[3:]])
        assert refused.value.code == 2
        assert f"argument --days: {days} is not a number of days from 1 to 3,660" in capsys.readouterr().err
    assert main(["generate", "--days", "7", "--end", "0001-01-01"]) == 2  # was an OverflowError traceback
    assert "--end 0001-01-01 minus --days 7 is before year 1" in capsys.readouterr().err
    assert main(["generate", "--days", "2", "--end", "1970-01-01"]) == 2
    assert "generator setting start=1969-12-31 (the last day minus days - 1) is before 1970-01-01" in (
        capsys.readouterr().err
    )
    assert main(["load", "movielens", "--data-dir", str(tmp_path / "ml-1m")]) == 2
    assert "missing ratings.train.tsv, u.item, u.user, u.genre" in capsys.readouterr().err
    assert not landing.exists()


def test_generate_creates_its_own_landing_zone_and_writes_it_again(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    own = tmp_path / "synthetic-landing"
    env.setenv("RECFLOW_LANDING_DIR", str(own))
    assert main(GENERATE) == 0
    assert json.loads((own / MARKER).read_text())["created_by"] == "recflow generate"
    first = checksums(own)
    assert main(GENERATE) == 0  # its own folder: regenerated, byte for byte
    assert checksums(own) == first
    empty = tmp_path / "empty"
    empty.mkdir()
    env.setenv("RECFLOW_LANDING_DIR", str(empty))
    assert main(GENERATE) == 0
    assert (empty / MARKER).is_file() and (empty / "pins" / "pins.parquet").is_file()


def test_a_home_made_before_markers_keeps_working(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An embedded home's own landing zone (no setting moves it) is recflow's, marker or not."""
    landing = tmp_path / "home" / "landing"
    producers_zone(landing)  # what an older `recflow generate` left there
    assert main(GENERATE) == 0
    assert (landing / MARKER).is_file()
    settings = Settings.from_env()
    (settings.duckdb_path.parent).mkdir(parents=True)
    (settings.duckdb_path).write_bytes(b"an older demo's warehouse")
    claim_demo_stores(settings)
    assert (settings.duckdb_path.parent / MARKER).is_file()
    assert settings.duckdb_path.read_bytes() == b"an older demo's warehouse"


def test_demo_refuses_the_production_profile(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing = tmp_path / "landing"
    before = producers_zone(landing)
    for name, value in {
        "RECFLOW_PROFILE": "production",
        "RECFLOW_LANDING_DIR": str(landing),
        "RECFLOW_ARTIFACT_ROOT": "s3://models/recflow",
        "RECFLOW_MLFLOW_TRACKING_URI": "http://127.0.0.1:9/",
        "RECFLOW_DBT_TARGET": "postgres",
        "RECFLOW_INCIDENTS_URL": f"sqlite:///{tmp_path / 'incidents.db'}",
        "RECFLOW_TRAINING_IMAGE": "example.invalid/recflow-ml:1",
        "RECFLOW_SAGEMAKER_ROLE_ARN": "arn:aws:iam::000000000000:role/recflow",
    }.items():
        env.setenv(name, value)
    code = main(DEMO)
    assert checksums(landing) == before
    assert not (tmp_path / "home").exists()
    err = capsys.readouterr().err
    assert code == 2 and "RECFLOW_PROFILE=production" in err and "embedded profile" in err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECFLOW_WAREHOUSE_URL", "postgresql://recflow:s3cret@127.0.0.1:9/warehouse"),
        ("RECFLOW_REGISTRY_BACKEND", "sagemaker"),
        ("RECFLOW_ARTIFACT_ROOT", "s3://models/recflow"),
        ("RECFLOW_MLFLOW_TRACKING_URI", "http://127.0.0.1:9/"),
        ("RECFLOW_LANDING_DIR", "{shared}"),
        ("RECFLOW_WAREHOUSE_PATH", "{shared}/warehouse.duckdb"),
        ("RECFLOW_ARTIFACT_ROOT", "file://{shared}"),
        ("RECFLOW_MLFLOW_TRACKING_URI", "sqlite:///{shared}/mlflow.db"),
    ],
)
def test_demo_refuses_a_store_it_did_not_create(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    shared = tmp_path / "shared"
    before = producers_zone(shared)
    home = tmp_path / "home"
    home.mkdir()
    # a home whose Airflow folder cannot be made: a demo that got past its checks stops at `setup`
    # instead of running the pipeline against the store
    (home / "airflow").write_text("not a folder")
    env.setenv(name, value.format(shared=shared))
    try:
        code = main(DEMO)
    except OSError:  # a demo that wrote its data reached `setup`
        code = None
    assert checksums(shared) == before
    # nothing written, not even the home's own landing zone
    assert [p.name for p in home.iterdir()] == ["airflow"]
    err = capsys.readouterr().err
    assert code == 2 and f"{name}=" in err and "s3cret" not in err


def test_the_local_spark_cluster_is_a_store_recflow_made_and_another_thrift_server_is_not(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The demo may write to the Thrift server of the cluster `recflow spark up` runs from this home (its
    folder carries the marker); any other Spark endpoint is a server recflow did not create."""
    from recflow.core.ownership import StoreNotOwned, pipeline_stores

    home = tmp_path / "home"
    cluster = home / "spark"
    cluster.mkdir(parents=True)
    (cluster / MARKER).write_text(json.dumps({"created_by": "recflow spark up"}))
    (cluster / "cluster.json").write_text("{}")
    ours = Settings.from_env(
        {"RECFLOW_HOME": str(home), "RECFLOW_WAREHOUSE_URL": "hive://recflow@127.0.0.1:10000/default"}
    )
    claim_demo_stores(ours)
    (warehouse,) = [s for s in pipeline_stores(ours) if s.kind == "warehouse"]
    assert warehouse.folder == cluster

    for url in ("hive://recflow@spark.internal:10000/default", "hive://recflow@127.0.0.1:10001/default"):
        theirs = Settings.from_env({"RECFLOW_HOME": str(home), "RECFLOW_WAREHOUSE_URL": url})
        with pytest.raises(StoreNotOwned, match="RECFLOW_WAREHOUSE_URL"):
            claim_demo_stores(theirs)
    (cluster / "cluster.json").unlink()  # no cluster running from this home: a server like any other
    with pytest.raises(StoreNotOwned, match="RECFLOW_WAREHOUSE_URL"):
        claim_demo_stores(ours)
