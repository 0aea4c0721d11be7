"""The embedded profile's secret files are owner-only from their first byte, whatever the umask."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from recflow.core.config import Settings
from recflow.stack.runtime import airflow_env


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The widest umask: a file created without an explicit mode is readable and writable by all."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_files_are_created_owner_only_without_a_later_chmod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> None:
    # a chmod after the write leaves the secret readable until it runs: allow none
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)
    monkeypatch.setattr(os, "fchmod", lambda *args, **kwargs: None)
    env = airflow_env(Settings.from_env({"RECFLOW_HOME": str(tmp_path)}), {})
    home = Path(env["AIRFLOW_HOME"])
    secrets_file = home / "recflow-secrets.json"
    passwords_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert passwords_file.parent == home
    assert _mode(secrets_file) == 0o600
    assert _mode(passwords_file) == 0o600, "Airflow keeps the mode of the file it appends the passwords to"
    stored = json.loads(secrets_file.read_text())
    assert stored["fernet_key"] == env["AIRFLOW__CORE__FERNET_KEY"]
    assert stored["jwt_secret"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert not [p.name for p in home.iterdir() if p.name.startswith(".")], "no temporary file is left"


def test_secrets_are_generated_once_and_a_file_left_readable_is_made_private(tmp_path: Path) -> None:
    settings = Settings.from_env({"RECFLOW_HOME": str(tmp_path)})
    first = airflow_env(settings, {})
    home = Path(first["AIRFLOW_HOME"])
    for name in ("recflow-secrets.json", "simple_auth_manager_passwords.json"):
        (home / name).chmod(0o644)  # as an older version could leave them
    second = airflow_env(settings, {})
    assert second["AIRFLOW__CORE__FERNET_KEY"] == first["AIRFLOW__CORE__FERNET_KEY"]
    assert second["AIRFLOW__API__SECRET_KEY"] == first["AIRFLOW__API__SECRET_KEY"]
    assert _mode(home / "recflow-secrets.json") == 0o600
    assert _mode(home / "simple_auth_manager_passwords.json") == 0o600
