"""The training image installs what the entrypoint imports, at the versions the venv is locked to."""

from __future__ import annotations

from recflow.core.config import PROJECT_ROOT


def _pins(path: str) -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / path).read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_image_pins_match_the_lock() -> None:
    image, lock = _pins("ml/requirements.txt"), _pins("constraints.txt")
    assert image, "ml/requirements.txt pins nothing"
    for name, version in image.items():
        assert lock.get(name) == version, (
            f"{name}=={version} in the image, {lock.get(name)} in constraints.txt"
        )


def test_dockerfile_runs_the_entrypoint() -> None:
    dockerfile = (PROJECT_ROOT / "ml" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "recflow_ml.train"]' in dockerfile
    assert "COPY recflow_ml" in dockerfile
