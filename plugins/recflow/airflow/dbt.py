"""The dbt project as an Airflow task group (astronomer-cosmos), one task per dbt node.

The graph comes from ``dbt/target/manifest.json``, compiled at setup by
``dbt parse`` (``make setup``): parsing a DAG never runs dbt. ``TestBehavior.BUILD``
makes each model's task a ``dbt build`` of that model, so the model and its
tests pass or fail together, as one named task. Tests that read several models
(relationships, the cross-model singular tests) run as their own tasks once all
their parents are built, with cautious indirect selection so that a model's
build never runs a test whose other parents are not built yet.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from recflow.core.config import Settings
from recflow.core.names import TRANSFORM
from recflow.warehouse import ANALYTICS_SCHEMA, WAREHOUSE_POOL

UNIT_TESTS_OFF = {"DBT_EXCLUDE_RESOURCE_TYPES": "unit_test"}
"""The variable that keeps unit tests out of the DAG's ``dbt build`` (dbt's own flag, read from the env)."""


def dbt_task_group(settings: Settings, group_id: str = TRANSFORM, **kwargs: Any) -> Any:
    from cosmos import DbtTaskGroup, ExecutionConfig, ProjectConfig, RenderConfig  # noqa: PLC0415 (Cosmos loads dbt's adapters (seconds): only when a DAG file draws the task group)
    from cosmos.constants import InvocationMode, LoadMode, TestBehavior, TestIndirectSelection  # noqa: PLC0415 (Cosmos loads dbt's adapters (seconds): only when a DAG file draws the task group)

    project_dir = settings.dbt_project_dir
    project = ProjectConfig(
        dbt_project_path=project_dir,
        manifest_path=settings.dbt_manifest_path,
        # the server warehouse's parts (its password) never go into the parsed DAG: the profile
        # mapping below reads them from the connection when a task runs
        env_vars={
            **{k: v for k, v in settings.dbt_env().items() if not k.startswith("RECFLOW_WAREHOUSE_")},
            # dbt's unit tests check the models' logic on fixed rows: `make test` runs them
            # (tests/integration/test_dbt_build.py), a day's run need not pay ~2 s a model again
            **UNIT_TESTS_OFF,
        },
        install_dbt_deps=False,
    )
    # Cosmos wraps every manifest path in Airflow's ObjectStoragePath, whose first use
    # imports each provider's filesystem (the Amazon provider's pulls in boto3) on every
    # parse of this DAG; the manifest is a local file, read as one.
    project.manifest_path = settings.dbt_manifest_path
    return DbtTaskGroup(
        group_id=group_id,
        project_config=project,
        profile_config=_profile(settings),
        execution_config=ExecutionConfig(
            invocation_mode=InvocationMode.DBT_RUNNER,
            test_indirect_selection=TestIndirectSelection.CAUTIOUS,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.BUILD,
            emit_datasets=False,
            enable_mock_profile=False,
            should_detach_multiple_parents_tests=True,
        ),
        operator_args={
            "pool": WAREHOUSE_POOL,
            "install_deps": False,
            # a model's build is seconds on a day of data; a hung one must fail and page
            "execution_timeout": timedelta(minutes=30),
        },
        **kwargs,
    )


def _profile(settings: Settings) -> Any:
    """DuckDB: the committed ``dbt/profiles.yml``. PostgreSQL and Spark: Cosmos maps the Airflow connection
    ``RECFLOW_WAREHOUSE_CONN_ID`` onto the profile when the task runs (``docs/deploy.md``)."""
    from cosmos import ProfileConfig  # noqa: PLC0415 (Cosmos loads dbt's adapters (seconds): only when a DAG file draws the task group)

    if settings.dbt_target == "postgres":
        from cosmos.profiles import PostgresUserPasswordProfileMapping  # noqa: PLC0415 (Cosmos loads dbt's adapters (seconds): only when a DAG file draws the task group)

        return ProfileConfig(
            profile_name="recflow",
            target_name="postgres",
            profile_mapping=PostgresUserPasswordProfileMapping(
                conn_id=settings.warehouse_conn_id, profile_args={"schema": ANALYTICS_SCHEMA, "threads": 1}
            ),
        )
    if settings.dbt_target == "spark":
        from cosmos.profiles import SparkThriftProfileMapping  # noqa: PLC0415 (Cosmos loads dbt's adapters (seconds): only when a DAG file draws the task group)

        # a `spark` connection (host, port, login) of the Thrift server; one thread, as on PostgreSQL:
        # the cluster parallelises each statement, the warehouse pool serialises the tasks
        return ProfileConfig(
            profile_name="recflow",
            target_name="spark",
            profile_mapping=SparkThriftProfileMapping(
                conn_id=settings.warehouse_conn_id,
                profile_args={"schema": ANALYTICS_SCHEMA, "threads": 1, "connect_retries": 3},
            ),
        )
    return ProfileConfig(
        profile_name="recflow",
        target_name=settings.dbt_target,
        profiles_yml_filepath=settings.dbt_project_dir / "profiles.yml",
    )
