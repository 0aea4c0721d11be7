"""The S3 side of the SageMaker registry: what it keeps under ``<artifact root>/registry/``.

A version's record (``<name>/<job>/record.json``: metrics, hyperparameters, lineage, the model
card's tags, the curves, the pictures), its model archive and pictures next to it, and the
champion's log (``<name>/champion/pending.json`` and ``history/<seq>.json``); the values of a
package's ``CustomerMetadataProperties``. :class:`~recflow.registry.sagemaker.SageMakerRegistry`
adds the model package groups and packages.
"""

from __future__ import annotations

import json
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from recflow.core.artifacts import S3ArtifactStore, aws_client, pack_directory, unpack_model
from recflow.core.config import Settings
from recflow.core.errors import ConfigError, RegistryError
from recflow.core.locks import create_if_absent
from recflow.registry.base import BaseRegistry
from recflow.registry.model import CHAMPION, JOB_KEY, NOT_A_METRIC, PICTURES, ModelVersionInfo

REGISTRY_PREFIX = "registry"
"""Under the artifact root: ``registry/<name>/<job>/`` (a version's files), ``registry/<name>/champion/``."""
RECORD = "record.json"
ARCHIVE = "model.tar.gz"
JOB_PROPERTY = "recflow.training_job_name"
COMPLETE_PROPERTY = "recflow.complete"
RECORD_PROPERTY = "recflow.record"
LINEAGE_PROPERTY_PREFIX = "lineage."
METRIC_PROPERTY_PREFIX = "metric."
MAX_PROPERTIES = 50
MAX_PROPERTY_VALUE = 256


def property_value(value: str) -> str:
    """``value`` as SageMaker accepts it in ``CustomerMetadataProperties`` (other characters become ``_``)."""
    kept = "".join(
        ch if ch.isalnum() or ch in "_.:/=+-@" or unicodedata.category(ch).startswith("Z") else "_"
        for ch in value
    )
    return kept[:MAX_PROPERTY_VALUE] or "-"


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, indent=1).encode()


class SageMakerRecords(BaseRegistry):
    """The primitives of :class:`~recflow.registry.base.BaseRegistry` that read and write S3: a version's
    record and archive, the champion's pending move and history."""

    def __init__(self, settings: Settings) -> None:
        root = urlparse(settings.artifacts_uri)
        if root.scheme != "s3":
            raise ConfigError(
                f"RECFLOW_REGISTRY_BACKEND=sagemaker keeps model archives in S3: RECFLOW_ARTIFACT_ROOT must be "
                f"s3://bucket/prefix, not {settings.artifacts_uri!r}"
            )
        self.settings = settings
        self.s3 = aws_client(settings, "s3")
        self.store = S3ArtifactStore(self.s3)
        self.bucket = root.netloc
        self.prefix = "/".join(p for p in (root.path.strip("/"), REGISTRY_PREFIX) if p)

    # -- S3: a version's files and the champion's log -------------------------------------------

    def _key(self, name: str, *parts: str) -> str:
        return "/".join([self.prefix, name, *parts])

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _get_json(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.store.get_bytes(self._uri(key))
        except FileNotFoundError:
            return None
        document: dict[str, Any] = json.loads(body)
        return document

    def _put_json(self, key: str, document: Mapping[str, Any]) -> None:
        self.store.put_bytes(_json_bytes(document), self._uri(key))

    def _record_move(self, name: str, entry: Mapping[str, Any]) -> None:
        """Write ``history/<seq>.json`` only if that number is free; a different move there refuses."""
        key = self._history_key(name, int(entry["seq"]))
        if create_if_absent(self.settings, self._uri(key), _json_bytes(entry)):
            return
        recorded = self._get_json(key)
        if recorded != dict(entry):
            raise RegistryError(
                f"{name}: move {entry['seq']} is already recorded ({self._uri(key)}: {recorded}); not "
                f"overwriting it with {dict(entry)}. Another writer moved the champion without its lock: "
                f"check `recflow models history --name {name}` and the approvals"
            )

    def _keys(self, prefix: str) -> list[str]:
        return [urlparse(uri).path.lstrip("/") for uri in self.store.list(self._uri(prefix))]

    def _record_key(self, name: str, job: str) -> str:
        return self._key(name, job, RECORD)

    def _pending_key(self, name: str) -> str:
        return self._key(name, CHAMPION, "pending.json")

    def _history_key(self, name: str, seq: int) -> str:
        return self._key(name, CHAMPION, "history", f"{seq:06d}.json")

    # -- a version's record and archive ---------------------------------------------------------

    def _ensure_run(self, name: str, job: str) -> Any:
        return self._get_json(self._record_key(name, job))

    def _run_complete(self, run: Any) -> bool:
        return bool(run["complete"])

    def _archive_uri(self, name: str, job: str) -> str:
        return self._uri(self._key(name, job, ARCHIVE))

    def _log_artifacts(
        self, name: str, job: str, run: Any, model_dir: Path, pictures_dir: Path | None
    ) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            self.store.put_file(pack_directory(model_dir, Path(tmp) / ARCHIVE), self._archive_uri(name, job))
        files = sorted(p for p in (pictures_dir.iterdir() if pictures_dir else ()) if p.is_file())
        for path in files:
            self.store.put_file(path, self._uri(self._key(name, job, PICTURES, path.name)))
        run["pictures"] = [p.name for p in files]

    def _complete_run(self, name: str, job: str, run: Any) -> None:
        run["complete"] = True
        self._put_json(self._record_key(name, job), run)

    def _ensure_logged(
        self,
        name: str,
        job: str,
        record: Any,
        metrics: Mapping[str, float],
        params: Mapping[str, str],
        lineage: Mapping[str, str],
        curves: Mapping[str, Sequence[float]],
        run_tags: Mapping[str, str],
    ) -> dict[str, Any]:
        """The job's record, with what it lacked added (what it holds is kept; other params refuse)."""
        key = self._record_key(name, job)
        have = record or {"training_job_name": job, "complete": False, "pictures": []}
        clashes = {
            k: (have.get("params", {})[k], str(v))
            for k, v in params.items()
            if k in have.get("params", {}) and have["params"][k] != str(v)
        }
        if clashes:
            raise RegistryError(
                f"the record of training job {job} ({self._uri(key)}) already has other values for params "
                + ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in sorted(clashes.items()))
            )
        new: dict[str, dict[str, Any]] = {
            "metrics": {k: float(v) for k, v in metrics.items() if k not in NOT_A_METRIC},
            "params": {k: str(v) for k, v in params.items()},
            "lineage": dict(lineage),
            "run_tags": {k: str(v) for k, v in run_tags.items()},
            "curves": {k: [float(x) for x in values] for k, values in curves.items()},
        }
        merged = dict(have)
        for section, values in new.items():
            merged[section] = {**values, **have.get(section, {})}
        if record is None or merged != record:
            self._put_json(key, merged)
        return merged

    def _package_properties(self, record: Mapping[str, Any], record_uri: str) -> dict[str, str]:
        properties = {
            JOB_PROPERTY: property_value(str(record["training_job_name"])),
            COMPLETE_PROPERTY: "false",
            RECORD_PROPERTY: property_value(record_uri),
        }
        extra = [(f"{LINEAGE_PROPERTY_PREFIX}{k}", str(v)) for k, v in sorted(record["lineage"].items())]
        extra += [
            (f"{METRIC_PROPERTY_PREFIX}{k}", repr(float(v))) for k, v in sorted(record["metrics"].items())
        ]
        for key, value in extra[: MAX_PROPERTIES - len(properties) - 3]:  # room for the champion's three
            properties[property_value(key)[:128]] = property_value(value)
        return properties

    def _version_record(self, info: ModelVersionInfo) -> dict[str, Any]:
        job = info.lineage.get(JOB_KEY)
        return (self._get_json(self._record_key(info.name, job)) if job else None) or {}

    def _download(self, info: ModelVersionInfo, out: Path) -> Path:
        """The version's SavedModel, unpacked into ``out``."""
        if not info.source:
            raise RegistryError(f"{info.name} version {info.version} names no model archive")
        with tempfile.TemporaryDirectory() as tmp:
            archive = self.store.get_file(info.source, Path(tmp) / ARCHIVE)
            return unpack_model(archive, out)

    # -- the champion's pending move --------------------------------------------------------------

    def _intend(self, name: str, entry: Mapping[str, Any]) -> None:
        self._put_json(self._pending_key(name), entry)

    def _pending(self, name: str) -> dict[str, Any] | None:
        return self._get_json(self._pending_key(name))

    def _clear_pending(self, name: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self._pending_key(name))
