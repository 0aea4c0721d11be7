"""The incident kinds of Airflow's and Cosmos's own errors: a sensor's timeout, a failed dbt invocation.

``recflow.oncall.incidents`` classifies by recflow's error types and imports no Airflow; the
failure callback (``recflow.airflow.alerts``) hands it :func:`classify`, which knows these too.
"""

from __future__ import annotations

from cosmos.exceptions import CosmosDbtRunError

from airflow.sdk.exceptions import AirflowSensorTimeout
from recflow.oncall import incidents
from recflow.oncall.record import Kind


def classify(error: BaseException | str | None) -> Kind:
    """recflow's kind for its own errors (:func:`recflow.oncall.incidents.classify`); then
    ``sensor_timeout`` for a sensor that gave up, ``transform`` for a dbt invocation that failed,
    ``infrastructure`` for anything else."""
    kind = incidents.classify(error)
    if kind != "infrastructure" or not isinstance(error, BaseException):
        return kind
    if isinstance(error, AirflowSensorTimeout):
        return "sensor_timeout"
    return "transform" if isinstance(error, CosmosDbtRunError) else "infrastructure"
