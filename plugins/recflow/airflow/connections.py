"""Settings for a task, completed from Airflow connections: the one place tasks read secrets from Airflow.

A task calls :func:`task_settings` instead of ``Settings.from_env``. Two connections
are read, each only when it exists, so the embedded profile needs neither:

- ``RECFLOW_WAREHOUSE_CONN_ID`` (``recflow_warehouse``), read when ``RECFLOW_DBT_TARGET`` is ``postgres``
  (a PostgreSQL connection) or ``spark`` (a ``spark`` connection to the Thrift server: host, port,
  login); it becomes ``Settings.warehouse_url`` (``postgresql://...``, ``hive://login@host:port/default``)
  for every warehouse step, dbt's build included (``recflow.transform.run_build`` sets the committed
  profile's ``RECFLOW_WAREHOUSE_*`` variables from it while dbt runs).
- ``RECFLOW_AWS_CONN_ID`` (``aws_default``): the Amazon provider's ``AwsBaseHook`` builds
  a boto3 session from it (keys, a role to assume, a profile) and that session becomes
  boto3's default one in this process, so S3 and SageMaker clients made anywhere in
  ``recflow`` (``recflow.core.artifacts.aws_client``) use it. Without the connection the hook
  falls back to boto3's own chain (environment, instance or pod role).
"""

from __future__ import annotations

import dataclasses
import logging

from recflow.core.config import Settings

log = logging.getLogger(__name__)


def _connection_uri(conn_id: str) -> str | None:
    from airflow.sdk import BaseHook  # noqa: PLC0415 (Airflow's hooks and providers load when a task runs, not at DAG parse)
    from airflow.sdk.exceptions import AirflowNotFoundException  # noqa: PLC0415 (Airflow's hooks and providers load when a task runs, not at DAG parse)

    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    return str(connection.get_uri())


WAREHOUSE_SCHEMES = {"postgres": "postgresql", "spark": "hive"}
"""The dbt targets whose warehouse is an Airflow connection, and the URL scheme recflow opens it with."""


def warehouse_url_of(connection_uri: str, dbt_target: str) -> str:
    """The warehouse URL of an Airflow connection's URI (``postgres://`` → ``postgresql://``; a ``spark``
    connection to a Thrift server → ``hive://``, its schema, when none, ``default``)."""
    rest = connection_uri.split("://", 1)[1]
    url = f"{WAREHOUSE_SCHEMES[dbt_target]}://{rest}"
    if dbt_target == "spark" and "/" not in rest.split("?", 1)[0]:
        url = url.replace("?", "/default?", 1) if "?" in url else f"{url}/default"
    return url


def _uses_aws(settings: Settings) -> bool:
    return (
        settings.artifacts_uri.startswith("s3://")
        or settings.training_backend == "sagemaker"
        or settings.registry_backend == "sagemaker"
    )


def use_aws_connection(settings: Settings) -> None:
    """Make the AWS connection's session boto3's default in this process (when AWS is in use at all)."""
    if not _uses_aws(settings):
        return
    import boto3  # noqa: PLC0415 (Airflow's hooks and providers load when a task runs, not at DAG parse)

    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook  # noqa: PLC0415 (Airflow's hooks and providers load when a task runs, not at DAG parse)

    boto3.DEFAULT_SESSION = AwsBaseHook(aws_conn_id=settings.aws_conn_id).get_session(
        region_name=settings.aws_region
    )


def task_settings() -> Settings:
    """``Settings.from_env()``, with the warehouse from its Airflow connection and AWS credentials set up."""
    settings = Settings.from_env()
    # read exactly when dbt reads it (recflow.airflow.dbt): every step then sees the same warehouse,
    # and a DuckDB task asks the API server for no connection
    uri = _connection_uri(settings.warehouse_conn_id) if settings.dbt_target in WAREHOUSE_SCHEMES else None
    if uri is not None:
        uri = warehouse_url_of(uri, settings.dbt_target)
        if settings.warehouse_url and settings.warehouse_url != uri:
            log.info(
                "warehouse from Airflow connection %s, not RECFLOW_WAREHOUSE_URL", settings.warehouse_conn_id
            )
        settings = dataclasses.replace(settings, warehouse_url=uri)
    use_aws_connection(settings)
    return settings
