"""A ``RECFLOW_`` variable that is no setting is warned of: a misspelled setting changed nothing, silently.

``RECFLOW_MAX_QUARANTINE_SHAR=0.05`` left the audit at its default share with no word; the names are
checked against docs/configuration.md's table, the page made from the same declarations.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from recflow.core import declare
from recflow.core.config import PROJECT_ROOT, Settings
from recflow.core.profiles import dbt_env


def _documented() -> set[str]:
    return set(
        re.findall(
            r"^\| `(RECFLOW_[A-Z0-9_]+)`", (PROJECT_ROOT / "docs" / "configuration.md").read_text(), re.M
        )
    )


def test_a_misspelled_setting_is_named_with_the_one_it_resembles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(declare, "_WARNED", set())
    assert "RECFLOW_MAX_QUARANTINE_SHARE" in _documented()
    env = {"RECFLOW_HOME": str(tmp_path), "RECFLOW_MAX_QUARANTINE_SHAR": "0.05", "RECFLOW_NOTHING_LIKE": "1"}
    with caplog.at_level(logging.WARNING, logger="recflow.core.declare"):
        settings = Settings.from_env(env)
        Settings.from_env(env)  # read again in the same process: said once
    assert settings.max_quarantine_share != 0.05
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "RECFLOW_MAX_QUARANTINE_SHAR is not a recflow setting, so it changes nothing: did you mean "
        "RECFLOW_MAX_QUARANTINE_SHARE? (docs/configuration.md lists the settings)",
        "RECFLOW_NOTHING_LIKE is not a recflow setting, so it changes nothing (docs/configuration.md lists "
        "the settings)",
    ]


def test_settings_and_the_variables_made_for_dbt_are_not_warned_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A process that runs dbt holds what ``dbt_env`` made (a server warehouse's URL in parts)."""
    monkeypatch.setattr(declare, "_WARNED", set())
    made = dbt_env(tmp_path / "w.duckdb", "2GB", tmp_path, "postgresql://u:p@db:5432/w")
    documented = {name: "1" for name in _documented() if name not in ("RECFLOW_HOME", "RECFLOW_PROFILE")}
    with caplog.at_level(logging.WARNING, logger="recflow.core.declare"):
        declare._warn_unknown({**made, **documented}, set(documented))
    assert caplog.records == []
