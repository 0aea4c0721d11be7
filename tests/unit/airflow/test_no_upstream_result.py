"""A task whose upstream task was marked success in the UI (so it never ran and left no XCom)."""

from __future__ import annotations

from typing import Any

import pytest

from recflow.airflow import tasks
from recflow.core.errors import NoUpstreamResult
from recflow.oncall import runbooks

NOTHING: Any = None
"""What Airflow passes for an upstream task that pushed no XCom (typed as the result it should be)."""


def _refusal(call: Any) -> NoUpstreamResult:
    with pytest.raises(NoUpstreamResult) as refused:
        call()
    return refused.value


def test_evaluate_gate_and_publish_refuse_an_upstream_that_left_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It was a bare TypeError ('NoneType' object is not subscriptable), retried, whose incident sent
    on-call to the train task's model_uri XCom, which does not exist."""
    monkeypatch.setattr(tasks, "task_settings", lambda: pytest.fail("read settings before its inputs"))
    snapshot = {"snapshot_id": "s"}
    refused = _refusal(lambda: tasks.evaluate.function(snapshot, NOTHING, params={}))
    assert str(refused).startswith("`train` passed no result to this task: marked success without running")
    assert "Clear `train` and its downstream tasks" in str(refused)
    assert not refused.retryable
    assert runbooks.anchor_for("evaluate", refused) in runbooks.load("recsys_train_and_publish").sections
    assert "`evaluate`" in str(_refusal(lambda: tasks.gate.function(NOTHING)))
    both = _refusal(lambda: tasks.publish.function(snapshot, NOTHING, NOTHING, {"promote": True}, params={}))
    assert "`train`, `evaluate` passed no result" in str(both)
