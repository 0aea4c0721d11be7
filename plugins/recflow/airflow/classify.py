"""The incident kinds of Airflow's own errors: a sensor's timeout.

``recflow.oncall.incidents`` classifies by recflow's error types and imports no Airflow; the
failure callback (``recflow.airflow.alerts``) hands it :func:`classify`, which knows these too.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowSensorTimeout
from recflow.oncall import incidents
from recflow.oncall.record import Kind


def classify(error: BaseException | str | None) -> Kind:
    """recflow's kind for its own errors (:func:`recflow.oncall.incidents.classify`: a dbt node that
    failed is ``transform``); then ``sensor_timeout`` for a sensor that gave up, ``infrastructure``
    for anything else."""
    kind = incidents.classify(error)
    if kind != "infrastructure" or not isinstance(error, BaseException):
        return kind
    return "sensor_timeout" if isinstance(error, AirflowSensorTimeout) else "infrastructure"
