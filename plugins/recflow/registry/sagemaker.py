"""The model registry on SageMaker's Model Registry (``RECFLOW_REGISTRY_BACKEND=sagemaker``).

Same contract as :class:`recflow.registry.MlflowRegistry` (:class:`recflow.registry.Registry`),
mapped onto SageMaker:

- a model name is a model package group (created idempotently), a version is a model package
  of that group (``ModelPackageVersion``);
- a package's ``InferenceSpecification`` points at the SageMaker model archive
  (``model.tar.gz`` of the published SavedModel) and its ``ModelMetrics.ModelQuality.Statistics``
  at the version's record (JSON: metrics, hyperparameters, lineage, the model card's tags,
  the curves, the pictures), both under ``<artifact root>/registry/<name>/<training job>/``;
  its ``CustomerMetadataProperties`` repeat the training job (the key of a publication),
  ``recflow.complete``, the lineage and the metrics so the SageMaker console shows them
  (values cut to what SageMaker accepts: 256 characters out of letters, digits, spaces and
  ``_.:/=+-@``; the record keeps them whole);
- ``champion`` is the package with ``ModelApprovalStatus=Approved``; a move approves the new
  champion, writing the move's number (``recflow.champion_seq``) in the same call, then sets
  every other approved package to ``Rejected``. Should two packages be approved (a move
  interrupted between the two, or someone approving in the console), the champion is the one
  with the highest move number, then the highest version.
- every move is recorded under ``<artifact root>/registry/<name>/champion/``: written ahead as
  ``pending.json``, then ``history/<seq>.json`` once the approvals moved, then ``pending.json``
  removed; the next move or publication of the model completes (or discards, when the approval
  never moved) a move interrupted in between. The history is kept in S3 rather than in tags or
  metadata properties because it is free text (reasons) and unbounded (SageMaker keeps 50 of each).
  A history entry is created only if its number is free (a conditional ``PutObject``), so no
  recorded move is ever overwritten.
- moves are serialized as MLflow's are: each runs under the model's lock
  (:func:`recflow.registry.champion_lock`, ``registry/locks/<name>`` under the same root), and a
  publication moves the approval only if the champion still is the version it expected
  (:meth:`recflow.registry.MlflowRegistry.publish`). An approval made in the console takes no
  lock: recflow's next move rejects it.

Publishing runs the same steps as MLflow's, under the same names (:data:`recflow.registry.PUBLISH_STEPS`),
each finding what an earlier attempt wrote: ``run`` (the job's record read, if any), ``logged``
(the record written, ``complete: false``), ``artifacts`` (archive and pictures uploaded),
``run_complete`` (the record marked complete), ``registered_model`` (the group), ``version`` (the
package carrying the job's name, found or created), ``version_complete``, ``champion_intent``,
``champion``, ``champion_recorded``. One training job is one package, whatever the attempts.
The artifact root must be ``s3://`` (the model archive is what SageMaker deploys).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from recflow.core.artifacts import aws_client, aws_error_code
from recflow.core.config import Settings
from recflow.core.errors import RegistryError
from recflow.core.model_names import name_refusal
from recflow.registry.base import ChampionState
from recflow.registry.champion import unknown_version
from recflow.registry.model import CHAMPION, PICTURE_FILES, PICTURES, ModelVersionInfo
from recflow.registry.sagemaker_records import (
    COMPLETE_PROPERTY,
    JOB_PROPERTY,
    LINEAGE_PROPERTY_PREFIX,
    METRIC_PROPERTY_PREFIX,
    SageMakerRecords,
    property_value,
)

log = logging.getLogger(__name__)

APPROVED = "Approved"
REJECTED = "Rejected"
PENDING_APPROVAL = "PendingManualApproval"
SEQ_PROPERTY = "recflow.champion_seq"
CHAMPION_BY_PROPERTY = "recflow.champion_by"
CHAMPION_AT_PROPERTY = "recflow.champion_at"
MAX_DESCRIPTION = 1024


def _is_missing(exc: Exception) -> bool:
    """A SageMaker ``ValidationException`` saying that the group or package does not exist."""
    message = str(exc).lower()
    return aws_error_code(exc) in ("ValidationException", "ResourceNotFound") and (
        "does not exist" in message or "not found" in message
    )


class SageMakerRegistry(SageMakerRecords):
    """The registry on SageMaker's Model Registry: the primitives of
    :class:`~recflow.registry.base.BaseRegistry`; see the module's docstring for the mapping."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.client = aws_client(settings, "sagemaker")

    # -- SageMaker: groups and packages ----------------------------------------------------------

    @staticmethod
    def _check_name(name: str) -> None:
        refusal = name_refusal("sagemaker", name)
        if refusal is not None:
            raise ValueError(refusal)

    def _group_exists(self, name: str) -> bool:
        if name_refusal("sagemaker", name) is not None:
            return False
        try:
            self.client.describe_model_package_group(ModelPackageGroupName=name)
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    def require_model(self, name: str) -> None:
        if not self._group_exists(name):
            raise RegistryError(f"there is no registered model named {name!r}")

    def _ensure_registered_model(self, name: str) -> None:
        if self._group_exists(name):
            return
        try:
            self.client.create_model_package_group(
                ModelPackageGroupName=name,
                ModelPackageGroupDescription="Two-tower retrieval model (recflow)",
            )
        except Exception as exc:
            if "already exists" not in str(exc).lower():
                raise
        log.info("created SageMaker model package group %s", name)

    def _groups(self) -> list[str]:
        paginator = self.client.get_paginator("list_model_package_groups")
        return sorted(
            g["ModelPackageGroupName"]
            for page in paginator.paginate()
            for g in page.get("ModelPackageGroupSummaryList", [])
        )

    def _packages(self, name: str, also: str | None = None) -> dict[int, dict[str, Any]]:
        """Every package of the group ``name`` (described: summaries lack the metadata), by version.

        ``also``: the ARN of a package just created, described even when the list does not show it yet.
        """
        paginator = self.client.get_paginator("list_model_packages")
        arns = [
            p["ModelPackageArn"]
            for page in paginator.paginate(ModelPackageGroupName=name, ModelPackageType="Versioned")
            for p in page.get("ModelPackageSummaryList", [])
        ]
        if also is not None and also not in arns:
            arns.append(also)
        described = (self.client.describe_model_package(ModelPackageName=arn) for arn in arns)
        return {int(p["ModelPackageVersion"]): p for p in described}

    @staticmethod
    def _properties(package: Mapping[str, Any]) -> dict[str, str]:
        return dict(package.get("CustomerMetadataProperties") or {})

    def _update(
        self,
        package: Mapping[str, Any],
        *,
        status: str | None = None,
        description: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        # every field is sent whole: UpdateModelPackage merges the metadata properties, moto's
        # server replaces them (and clears an omitted status or description), so both agree on this
        self.client.update_model_package(
            ModelPackageArn=package["ModelPackageArn"],
            ModelApprovalStatus=status or package.get("ModelApprovalStatus") or PENDING_APPROVAL,
            ApprovalDescription=(
                description if description is not None else package.get("ApprovalDescription", "")
            )[:MAX_DESCRIPTION],
            CustomerMetadataProperties=dict(
                properties if properties is not None else self._properties(package)
            ),
        )

    @staticmethod
    def _seq_of(package: Mapping[str, Any]) -> int:
        raw = (package.get("CustomerMetadataProperties") or {}).get(SEQ_PROPERTY, "0")
        return int(raw) if raw.isdigit() else 0

    @classmethod
    def _champion_of(cls, packages: Mapping[int, Mapping[str, Any]]) -> int | None:
        approved = [v for v, p in packages.items() if p.get("ModelApprovalStatus") == APPROVED]
        return max(approved, key=lambda v: (cls._seq_of(packages[v]), v)) if approved else None

    # -- reading --------------------------------------------------------------------------------

    def _info(self, name: str, package: Mapping[str, Any], champion: int | None) -> ModelVersionInfo:
        properties = self._properties(package)
        job = properties.get(JOB_PROPERTY, "")
        record = (self._get_json(self._record_key(name, job)) if job else None) or {}
        lineage = record.get("lineage") or {
            k.removeprefix(LINEAGE_PROPERTY_PREFIX): v
            for k, v in properties.items()
            if k.startswith(LINEAGE_PROPERTY_PREFIX)
        }
        metrics = record.get("metrics") or {
            k.removeprefix(METRIC_PROPERTY_PREFIX): float(v)
            for k, v in properties.items()
            if k.startswith(METRIC_PROPERTY_PREFIX)
        }
        containers = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
        created = package["CreationTime"]
        version = int(package["ModelPackageVersion"])
        return ModelVersionInfo(
            name=name,
            version=version,
            aliases=[CHAMPION] if version == champion else [],
            metrics={k: float(v) for k, v in metrics.items()},
            params=dict(record.get("params") or {}),
            lineage=dict(lineage),
            created_at=(created if isinstance(created, datetime) else datetime.fromisoformat(str(created)))
            .astimezone(UTC)
            .isoformat(),
            source=str(containers[0].get("ModelDataUrl", "")),
            run_id="",
            complete=properties.get(COMPLETE_PROPERTY) == "true",
            run_tags=dict(record.get("run_tags") or {}),
            artifact_uri=self._uri(self._key(name, job)) if job else "",
        )

    def get_by_alias(self, name: str, alias: str = CHAMPION) -> ModelVersionInfo | None:
        if alias != CHAMPION:
            raise RegistryError(
                f"the SageMaker registry keeps one alias, {CHAMPION!r} (ModelApprovalStatus=Approved), "
                f"not {alias!r}"
            )
        if not self._group_exists(name):
            return None
        packages = self._packages(name)
        champion = self._champion_of(packages)
        return None if champion is None else self._info(name, packages[champion], champion)

    def get_version(self, name: str, version: int, *, arn: str | None = None) -> ModelVersionInfo:
        self.require_model(name)
        packages = self._packages(name, also=arn)
        if version not in packages:
            raise RegistryError(f"{name} has no version {version}")
        return self._info(name, packages[version], self._champion_of(packages))

    def list_versions(self, name: str | None = None) -> list[ModelVersionInfo]:
        """Every version (``complete`` says whether its publication finished), by name then version."""
        names = ([name] if self._group_exists(name) else []) if name else self._groups()
        infos = []
        for group in names:
            packages = self._packages(group)
            champion = self._champion_of(packages)
            infos += [self._info(group, packages[v], champion) for v in sorted(packages)]
        return infos

    def curve(self, info: ModelVersionInfo, name: str) -> list[float]:
        record = self._version_record(info)
        return [float(v) for v in (record.get("curves") or {}).get(name, [])]

    def pictures(self, info: ModelVersionInfo) -> dict[str, str]:
        have = set(self._version_record(info).get("pictures") or [])
        return {
            key: f"{info.artifact_uri}/{PICTURES}/{file}"
            for key, file in PICTURE_FILES.items()
            if file in have
        }

    # -- publishing -----------------------------------------------------------------------------

    def _champion_now(self, name: str) -> int | None:
        return self._champion_of(self._packages(name)) if self._group_exists(name) else None

    def _version_of(self, handle: Any) -> int:
        return int(handle["ModelPackageVersion"])

    def _published(self, name: str, handle: Any) -> ModelVersionInfo:
        return self.get_version(name, self._version_of(handle), arn=str(handle["ModelPackageArn"]))

    def _ensure_version(self, name: str, job: str, record: Any, lineage: Mapping[str, str]) -> Any:
        archive_uri = self._archive_uri(name, job)
        found = [p for p in self._packages(name).values() if self._properties(p).get(JOB_PROPERTY) == job]
        if len(found) > 1:
            versions = ", ".join(sorted(str(p["ModelPackageVersion"]) for p in found))
            raise RegistryError(
                f"{name} has model packages {versions} for training job {job}; a job is published as one "
                "package: delete the extra packages and retry"
            )
        if found:
            log.info("training job %s: found %s version %s", job, name, found[0]["ModelPackageVersion"])
            return found[0]
        record_uri = self._uri(self._record_key(name, job))
        lineage = record["lineage"]  # the record's: what the first publication wrote
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(record["metrics"].items()))
        metadata = {"GeneratedBy": job[:1024]}
        if lineage.get("git_commit"):
            metadata["CommitId"] = str(lineage["git_commit"])[:1024]
        arn = self.client.create_model_package(
            ModelPackageGroupName=name,
            ModelPackageDescription=(
                f"recflow {name}: training job {job}; snapshot {lineage.get('snapshot_id', '?')}; {metrics}"
            )[:MAX_DESCRIPTION],
            InferenceSpecification={
                "Containers": [{"Image": self.settings.training_image, "ModelDataUrl": archive_uri}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            ModelApprovalStatus=PENDING_APPROVAL,
            MetadataProperties=metadata,
            ModelMetrics={
                "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": record_uri}}
            },
            CustomerMetadataProperties=self._package_properties(record, record_uri),
        )["ModelPackageArn"]
        package: dict[str, Any] = self.client.describe_model_package(ModelPackageName=arn)
        log.info("training job %s: created %s version %s", job, name, package["ModelPackageVersion"])
        return package

    def _ensure_version_complete(self, name: str, package: Any, lineage: Mapping[str, str]) -> None:
        properties = self._properties(package)
        if properties.get(COMPLETE_PROPERTY) == "true":
            return
        self._update(package, properties={**properties, COMPLETE_PROPERTY: "true"})

    # -- the champion ---------------------------------------------------------------------------

    def _history(self, name: str, packages: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:
        entries = {}
        for key in self._keys(self._key(name, CHAMPION, "history") + "/"):
            entry = self._get_json(key)
            if entry is not None:
                entries[int(entry["seq"])] = entry
        pending = self._get_json(self._pending_key(name))
        if pending is not None and self._moved(pending, packages):
            # a move whose approval moved but whose record was interrupted did happen
            entries.setdefault(int(pending["seq"]), pending)
        return [entries[seq] for seq in sorted(entries)]

    @classmethod
    def _moved(cls, entry: Mapping[str, Any], packages: Mapping[int, Mapping[str, Any]]) -> bool:
        target = packages.get(int(entry["version"]))
        return (
            target is not None
            and target.get("ModelApprovalStatus") == APPROVED
            and cls._seq_of(target) == int(entry["seq"])
        )

    def _completeness(self, name: str, version: int) -> tuple[bool, str]:
        packages = self._packages(name)
        if version not in packages:
            raise unknown_version(name, version, packages)
        properties = self._properties(packages[version])
        return properties.get(COMPLETE_PROPERTY) == "true", properties.get(JOB_PROPERTY, "(unknown)")

    def _champion_state(self, name: str, handle: Any = None) -> ChampionState:
        packages = self._packages(name, also=None if handle is None else str(handle["ModelPackageArn"]))
        return ChampionState(self._history(name, packages), self._champion_of(packages), packages)

    def _move(self, name: str, entry: Mapping[str, Any], state: ChampionState) -> None:
        self._approve(name, state.records, entry)

    def _approve(
        self, name: str, packages: Mapping[int, Mapping[str, Any]], entry: Mapping[str, Any]
    ) -> None:
        """Approve the move's version (its number written in the same call), then reject every other approved one."""
        version, seq = int(entry["version"]), int(entry["seq"])
        target = packages[version]
        if not self._moved(entry, packages):
            self._update(
                target,
                status=APPROVED,
                description=f"champion (move {seq}) by {entry['who']} at {entry['at']}: {entry['reason']}",
                properties={
                    **self._properties(target),
                    SEQ_PROPERTY: f"{seq:06d}",
                    CHAMPION_BY_PROPERTY: property_value(str(entry["who"])),
                    CHAMPION_AT_PROPERTY: property_value(str(entry["at"])),
                },
            )
        for other, package in sorted(packages.items()):
            if other != version and package.get("ModelApprovalStatus") == APPROVED:
                self._update(
                    package,
                    status=REJECTED,
                    description=f"superseded as champion by version {version} (move {seq})",
                )

    def _finish_pending(self, name: str, entry: Mapping[str, Any]) -> bool:
        """Approve and record the interrupted ``entry`` again if its approval moved."""
        packages = self._packages(name)
        if not self._moved(entry, packages):
            return False
        self._approve(name, packages, entry)
        self._record_move(name, entry)
        return True
