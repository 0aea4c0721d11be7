from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from recflow.core.config import PROJECT_ROOT, ConfigError, Settings, declared_settings


def test_defaults_put_all_state_under_home(tmp_path: Path) -> None:
    s = Settings.from_env({"RECFLOW_HOME": str(tmp_path)})
    assert s.duckdb_path == tmp_path / "warehouse" / "recflow.duckdb"
    assert s.artifacts_uri == (tmp_path / "artifacts").as_uri()
    assert s.mlflow_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert s.training_backend == "local"
    assert s.dbt_env()["RECFLOW_DUCKDB_PATH"] == str(s.duckdb_path)


def test_bad_values_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RECFLOW_TRAINING_BACKEND='k8s' is not one of local, sagemaker"):
        Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_TRAINING_BACKEND": "k8s"})
    with pytest.raises(ConfigError, match="RECFLOW_GATE_TOLERANCE='a lot' is not a number"):
        Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_GATE_TOLERANCE": "a lot"})


def test_production_overrides(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "RECFLOW_HOME": str(tmp_path),
            "RECFLOW_ARTIFACT_ROOT": "s3://bucket/recflow",
            "RECFLOW_TRAINING_BACKEND": "sagemaker",
            "RECFLOW_GATE_MIN_HR_AT_10": "0.3",
            "RECFLOW_GIT_COMMIT": "abc123",
        }
    )
    assert s.artifacts_uri == "s3://bucket/recflow"
    assert s.training_backend == "sagemaker"
    assert s.gate.min_hr_at_10 == 0.3
    assert s.git_commit == "abc123"


def test_to_env_round_trips(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "RECFLOW_HOME": str(tmp_path),
            "RECFLOW_MODEL_NAME": "m",
            "RECFLOW_MLFLOW_TRACKING_URI": "sqlite:////x.db",
            "RECFLOW_GATE_TOLERANCE": "0.05",
            "RECFLOW_ARTIFACT_ROOT": "s3://b/p",
        }
    )
    assert Settings.from_env(s.to_env()) == s


def test_embedded_profile_is_the_old_default(tmp_path: Path) -> None:
    assert Settings.from_env({"RECFLOW_HOME": str(tmp_path)}).to_env() == {
        "RECFLOW_HOME": str(tmp_path),
        "RECFLOW_PROFILE": "embedded",
        "RECFLOW_DUCKDB_MEMORY_LIMIT": "4GB",
        "RECFLOW_REGISTRY_BACKEND": "mlflow",
        "RECFLOW_TRAINING_BACKEND": "local",
        "RECFLOW_DBT_TARGET": "duckdb",
        "RECFLOW_AIRFLOW_API_PORT": "8080",
        "RECFLOW_WAREHOUSE_POOL_SLOTS": "1",
        "RECFLOW_MAX_QUARANTINE_SHARE": "0.01",
        "RECFLOW_VOLUME_MAX_RATIO": "5.0",
        "RECFLOW_VOLUME_HISTORY_DAYS": "7",
        "RECFLOW_ALERTS_CONN_ID": "recflow_alerts",
        "RECFLOW_MODEL_NAME": "recsys-demo",
        "RECFLOW_TRAINING_IMAGE": "recflow-ml:local",
        "RECFLOW_TRAINING_INSTANCE_TYPE": "ml.m5.xlarge",
        "RECFLOW_TRAINING_INSTANCE_COUNT": "1",
        "RECFLOW_SAGEMAKER_ROLE_ARN": "",
        "AWS_DEFAULT_REGION": "us-east-1",
        "RECFLOW_AWS_CONN_ID": "aws_default",
        "RECFLOW_WAREHOUSE_CONN_ID": "recflow_warehouse",
        "RECFLOW_RETENTION_KEEP_LAST": "5",
        "RECFLOW_RETENTION_MIN_AGE_HOURS": "24",
        "RECFLOW_GATE_RANKING": "full",
        "RECFLOW_GATE_MIN_HR_AT_10": "0.05",
        "RECFLOW_GATE_MIN_NDCG_AT_10": "0.02",
        "RECFLOW_GATE_TOLERANCE": "0.01",
        "RECFLOW_SPARK_WORKERS": "2",
        "RECFLOW_SPARK_WORKER_CORES": "1",
        "RECFLOW_SPARK_WORKER_MEMORY": "2g",
        "RECFLOW_SPARK_DRIVER_MEMORY": "1g",
        "RECFLOW_SPARK_MASTER_PORT": "7077",
        "RECFLOW_SPARK_THRIFT_PORT": "10000",
        "RECFLOW_SPARK_TABLE_FORMAT": "parquet",
    }
    assert Settings.from_env({}).home == (PROJECT_ROOT / ".recflow").resolve()


def test_a_given_mapping_is_the_only_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFLOW_PROFILE", "production")
    monkeypatch.setenv("RECFLOW_MODEL_NAME", "from-the-process")
    s = Settings.from_env({"RECFLOW_HOME": str(tmp_path)})
    assert (s.profile, s.model_name) == ("embedded", "recsys-demo")


def test_without_a_mapping_the_process_environment_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("RECFLOW_MODEL_NAME", "from-the-process")
    monkeypatch.setenv("RECFLOW_GATE_TOLERANCE", "0.02")
    s = Settings.from_env()
    assert (s.home, s.model_name, s.gate.tolerance) == (tmp_path.resolve(), "from-the-process", 0.02)


def test_an_empty_value_counts_as_unset(tmp_path: Path) -> None:
    s = Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_MODEL_NAME": "", "RECFLOW_PROFILE": ""})
    assert (s.model_name, s.profile) == ("recsys-demo", "embedded")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RECFLOW_WAREHOUSE_POOL_SLOTS", "abc", "RECFLOW_WAREHOUSE_POOL_SLOTS='abc' is not an integer"),
        ("RECFLOW_VOLUME_HISTORY_DAYS", "5.0", "RECFLOW_VOLUME_HISTORY_DAYS='5.0' is not an integer"),
        (
            "RECFLOW_WAREHOUSE_POOL_SLOTS",
            "0",
            "RECFLOW_WAREHOUSE_POOL_SLOTS='0' is below the least allowed value, 1",
        ),
        (
            "RECFLOW_MAX_QUARANTINE_SHARE",
            "1.5",
            "RECFLOW_MAX_QUARANTINE_SHARE='1.5' is above the greatest allowed",
        ),
        ("RECFLOW_GATE_TOLERANCE", "nan", "RECFLOW_GATE_TOLERANCE='nan' is not a number"),  # not "above"
        ("RECFLOW_PROFILE", "staging", "RECFLOW_PROFILE='staging' is not one of embedded, production"),
        (
            "RECFLOW_DUCKDB_MEMORY_LIMIT",
            "4 gigs",
            "RECFLOW_DUCKDB_MEMORY_LIMIT='4 gigs' is not a memory size such as 4GB",
        ),
    ],
)
def test_a_bad_value_is_a_config_error_naming_it(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        Settings.from_env({"RECFLOW_HOME": str(tmp_path), name: value})
    # the variable, for the failure callback to set aside; never the profile, on which every default hangs
    assert refused.value.invalid == (() if name == "RECFLOW_PROFILE" else (name,))


def test_every_bad_value_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {"RECFLOW_HOME": str(tmp_path), "RECFLOW_VOLUME_MAX_RATIO": "x", "RECFLOW_GATE_MIN_HR_AT_10": "y"}
        )
    assert str(raised.value).splitlines() == [
        "RECFLOW_VOLUME_MAX_RATIO='x' is not a number",
        "RECFLOW_GATE_MIN_HR_AT_10='y' is not a number",
    ]


PRODUCTION = {
    "RECFLOW_PROFILE": "production",
    "RECFLOW_ARTIFACT_ROOT": "s3://bucket/recflow",
    "RECFLOW_MLFLOW_TRACKING_URI": "postgresql://mlflow@db/mlflow",
    "RECFLOW_DBT_TARGET": "postgres",
    "RECFLOW_INCIDENTS_URL": "postgresql://recflow@db/recflow",
    "RECFLOW_TRAINING_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/recflow-ml:1.0",
    "RECFLOW_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/recflow-training",
}


def test_production_refuses_to_start_and_lists_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_PROFILE": "production"})
    message = str(raised.value)
    assert message.startswith("RECFLOW_PROFILE=production needs these variables set")
    named = [line.split(":")[0].strip() for line in message.splitlines()[1:]]
    assert named == [
        "RECFLOW_ARTIFACT_ROOT",
        "RECFLOW_MLFLOW_TRACKING_URI",
        "RECFLOW_DBT_TARGET",
        "RECFLOW_INCIDENTS_URL",
        "RECFLOW_TRAINING_IMAGE",
        "RECFLOW_SAGEMAKER_ROLE_ARN",
    ]


def test_production_trains_on_sagemaker_against_shared_stores(tmp_path: Path) -> None:
    s = Settings.from_env({"RECFLOW_HOME": str(tmp_path), **PRODUCTION})
    assert s.training_backend == "sagemaker"
    assert s.artifacts_uri == "s3://bucket/recflow"
    assert s.mlflow_uri == "postgresql://mlflow@db/mlflow"
    assert Settings.from_env(s.to_env()) == s


def test_production_needs_image_and_role_only_for_sagemaker(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in PRODUCTION.items()
        if k not in {"RECFLOW_TRAINING_IMAGE", "RECFLOW_SAGEMAKER_ROLE_ARN"}
    }
    s = Settings.from_env({"RECFLOW_HOME": str(tmp_path), **env, "RECFLOW_TRAINING_BACKEND": "local"})
    assert (s.training_backend, s.training_image) == ("local", "recflow-ml:local")


def test_replace_validates_like_construction(tmp_path: Path) -> None:
    s = Settings.from_env({"RECFLOW_HOME": str(tmp_path)})
    moved = dataclasses.replace(s, home=s.home / "benchmarks", warehouse_path=None)
    assert moved.duckdb_path == tmp_path.resolve() / "benchmarks" / "warehouse" / "recflow.duckdb"
    with pytest.raises(ValidationError):
        dataclasses.replace(s, warehouse_pool_slots=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.model_name = "other"  # type: ignore[misc]


def test_each_variable_is_declared_once() -> None:
    names = [s.env.name for s in declared_settings()]
    assert len(names) == len(set(names))
    assert all(name.startswith(("RECFLOW_", "AWS_")) for name in names)


def test_a_server_warehouse_reaches_dbt_in_parts(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "RECFLOW_HOME": str(tmp_path),
            "RECFLOW_WAREHOUSE_URL": "postgresql://rec:p%40ss@db.internal:6543/wh",
        }
    )
    env = s.dbt_env()
    assert (env["RECFLOW_WAREHOUSE_HOST"], env["RECFLOW_WAREHOUSE_PORT"]) == ("db.internal", "6543")
    assert (env["RECFLOW_WAREHOUSE_USER"], env["RECFLOW_WAREHOUSE_PASSWORD"]) == ("rec", "p@ss")
    assert env["RECFLOW_WAREHOUSE_DBNAME"] == "wh"
    assert "RECFLOW_WAREHOUSE_HOST" not in Settings.from_env({"RECFLOW_HOME": str(tmp_path)}).dbt_env()


def test_mlflow_artifacts_follow_the_artifact_root(tmp_path: Path) -> None:
    local = Settings.from_env({"RECFLOW_HOME": str(tmp_path)})
    assert local.mlflow_artifact_root == (tmp_path.resolve() / "mlflow" / "artifacts").as_uri()
    shared = Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_ARTIFACT_ROOT": "s3://b/p/"})
    assert shared.mlflow_artifact_root == "s3://b/p/mlflow"


def test_dbt_env_splits_a_spark_thrift_url(tmp_path: Path) -> None:
    """A ``hive://`` warehouse (Spark's Thrift server) gives dbt's spark output its host, port and user;
    without a port, HiveServer2's 10000."""
    env = Settings.from_env(
        {"RECFLOW_HOME": str(tmp_path), "RECFLOW_WAREHOUSE_URL": "hive://etl@spark.internal/default"}
    ).dbt_env()
    assert (env["RECFLOW_WAREHOUSE_HOST"], env["RECFLOW_WAREHOUSE_PORT"], env["RECFLOW_WAREHOUSE_USER"]) == (
        "spark.internal",
        "10000",
        "etl",
    )
    pg = Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_WAREHOUSE_URL": "postgresql://u@db/w"})
    assert pg.dbt_env()["RECFLOW_WAREHOUSE_PORT"] == "5432"


@pytest.mark.parametrize("size", ["2GB", "1k", "0g", "450m", "2.5g"])
def test_a_spark_memory_size_is_spark_s_spelling_and_at_least_what_spark_starts_with(
    tmp_path: Path, size: str
) -> None:
    """1k and 0g were taken, and Spark refused them only when the cluster came up (Spark needs 450 MiB of
    the heap the JVM reports, which -Xmx450m gives only with G1: 512m is the least asked for)."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_SPARK_DRIVER_MEMORY": size})
    assert str(refused.value) == (
        f"RECFLOW_SPARK_DRIVER_MEMORY={size!r}: not a memory size recflow gives Spark: a whole number and k, "
        "m, g or t (2g), at least 512m"
    )


@pytest.mark.parametrize("size", ["2G", "512m", "1t", "524288k"])
def test_spark_reads_these_sizes(tmp_path: Path, size: str) -> None:
    """Spark reads the unit in either case (2G was refused by a pattern of lower-case units)."""
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path), "RECFLOW_SPARK_WORKER_MEMORY": size})
    assert settings.spark.worker_memory == size


def test_a_home_that_is_a_file_is_refused_and_a_quoted_tilde_is_the_users_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RECFLOW_HOME that is a file got as far as ``generate`` and ``setup`` (NotADirectoryError,
    FileExistsError tracebacks); ``'~/x'``, quoted in a shell or set in a unit file, became ``./~/x``."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("someone's")
    for name in ("RECFLOW_HOME", "RECFLOW_LANDING_DIR", "RECFLOW_SPARK_DIR"):
        with pytest.raises(ConfigError, match=f"^{name}='{a_file}' is a file, not a folder$"):
            Settings.from_env({"RECFLOW_HOME": str(tmp_path), name: str(a_file)})
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings.from_env({"RECFLOW_HOME": "~/recflow"}).home == tmp_path / "recflow"
    assert a_file.read_text() == "someone's"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECFLOW_MLFLOW_TRACKING_URI", "not a uri"),  # MLflow took it for a file store, with a traceback
        ("RECFLOW_MLFLOW_TRACKING_URI", "ftp://user:pw@host/mlflow"),
        ("RECFLOW_INCIDENTS_URL", "nope://user:pw@host/x"),  # a traceback, only where incidents are read
        ("RECFLOW_INCIDENTS_URL", "/var/lib/recflow/incidents.db"),
        ("RECFLOW_INCIDENTS_URL", "SQLITE:////srv/incidents.db"),  # SQLAlchemy: no such dialect
        ("RECFLOW_INCIDENTS_URL", "postgres://user:pw@db/incidents"),  # the alias SQLAlchemy dropped
    ],
)
def test_a_store_url_of_no_known_kind_is_refused_without_repeating_it(
    tmp_path: Path, name: str, value: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"RECFLOW_HOME": str(tmp_path), name: value})
    assert str(refused.value).startswith(f"{name} is not ")
    assert value not in str(refused.value) and "pw" not in str(refused.value)
    if value.startswith("postgres://"):
        assert "write postgresql://" in str(refused.value)
    assert refused.value.invalid == (name,)
    assert not (Path.cwd() / value).exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECFLOW_MLFLOW_TRACKING_URI", "sqlite:////srv/mlflow.db"),
        ("RECFLOW_MLFLOW_TRACKING_URI", "postgresql+psycopg2://mlflow:pw@db:5432/mlflow"),
        ("RECFLOW_MLFLOW_TRACKING_URI", "https://mlflow.internal"),
        ("RECFLOW_MLFLOW_TRACKING_URI", "databricks"),
        ("RECFLOW_MLFLOW_TRACKING_URI", "sqlite:///relative/mlflow.db"),
        ("RECFLOW_INCIDENTS_URL", "postgresql://recflow:pw@db:5432/incidents"),
        ("RECFLOW_INCIDENTS_URL", "sqlite:////srv/incidents.db"),
    ],
)
def test_store_urls_of_the_kinds_the_docs_show_are_taken(tmp_path: Path, name: str, value: str) -> None:
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path), name: value})
    assert settings.to_env()[name] == value
