"""What the publish task's log says when the registry left champion where a person put it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from recflow.airflow import tasks


def test_a_publication_that_left_champion_says_so_not_the_gates_promoted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The gate passed the challenger ("promoted: ..."), but the registry refused to move champion
    back to a version a person moved it off: the task's last line ended with the gate's
    "(promoted: ...)" beside an alias list without champion."""
    refusal = "version 2 was moved off champion by hand by alice at move 3 (roll back: CTR drop)"

    def publish_evaluated(settings: Any, **kwargs: Any) -> dict[str, Any]:
        return {"name": "recsys-demo", "version": 2, "aliases": [], "not_promoted": refusal}

    monkeypatch.setattr("recflow.publishing.publish.publish_evaluated", publish_evaluated)
    monkeypatch.setattr(tasks, "task_settings", lambda: None)
    decision = {"promote": True, "reason": "promoted: not worse than the champion within 0.0100"}
    with caplog.at_level(logging.INFO, logger=tasks.log.name):
        tasks.publish.function({}, {}, {}, decision, params={})
    last = caplog.records[-1].getMessage()
    assert last == f"published recsys-demo version 2, aliases [] ({refusal})"
