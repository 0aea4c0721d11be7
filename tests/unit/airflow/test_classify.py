"""The kinds of Airflow's own errors, which recflow.oncall leaves to recflow.airflow."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from recflow.airflow.classify import classify
from recflow.core import errors
from recflow.oncall import incidents


def test_airflows_errors_and_a_failed_dbt_node_have_kinds() -> None:
    assert classify(AirflowSensorTimeout("Sensor has timed out")) == "sensor_timeout"
    assert (
        classify(errors.DbtNodeFailed("model stg_events: boom", node="stg_events", failed=["x"]))
        == "transform"
    )
    assert incidents.classify(AirflowSensorTimeout("Sensor has timed out")) == "infrastructure"
    try:
        raise AirflowFailException("audit refused the day") from errors.PartitionRefused(
            "refused", check="quarantine_share"
        )
    except AirflowFailException as wrapped:
        assert classify(wrapped) == "data"


@pytest.mark.parametrize(
    "error",
    [
        errors.PartitionRefused("refused", check="quarantine_share"),
        errors.TrainingJobFailed("j", "Failed", "AlgorithmError: nan", "algorithm"),
        errors.LandingLate("no _SUCCESS"),
        KeyError("x"),
        None,
        "a string",
    ],
)
def test_on_anything_else_it_agrees_with_recflows_own(error: BaseException | str | None) -> None:
    assert classify(error) == incidents.classify(error)
