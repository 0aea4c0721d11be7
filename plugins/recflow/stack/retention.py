"""The retention policy: which of the pipeline's own artifacts ``recflow gc`` may delete.

The pipeline writes, and never deletes, six kinds of things (docs/architecture.md):

- ``snapshots``: ``<artifacts>/snapshots/<snapshot id>/``, one per snapshot;
- ``checkpoints``: ``<artifacts>/checkpoints/<job>/``, one per job (its attempts share it);
- ``models``: ``<artifacts>/models/<job>/`` (``output/model.tar.gz``), one per job attempt;
- ``serving``: ``<artifacts>/serving/<job>/`` (``model.tar.gz``), one per published job;
- ``evaluations``: ``<artifacts>/evaluations/<job>/against-<vN|none>.json``, one folder per evaluated
  job (earlier versions wrote ``<job>.json``, still recognised);
- ``jobs``: ``$RECFLOW_HOME/jobs/<job>/``, the local backend's folder of a job attempt.

An item (each "one per" above) is **kept** when any of these holds, checked in this order:

1. *referenced*: a registered version of any model of the configured registry
   (``list_versions()``, complete or not) names it through its lineage: its
   ``snapshot_id``; its ``training_job_name`` (the job's checkpoints, model archive, serving
   archive, evaluation and job folder, and those of the job's other attempts, ``<job>-r2``...);
   or a URI of its lineage (``model_uri``, ``serving_model_uri``, ``evaluation_report``, the
   snapshot files of ``serving_history``) or its source lies in it;
2. *in use*: a local training job that has not ended (its ``description.json`` is missing or
   not ``Completed``/``Failed``/``Stopped``) uses it: its own folder, its checkpoints and model
   archive, the snapshot its input channels read;
3. *input of a kept job*: a snapshot that a kept job item (of any kind, for any reason) was trained
   on, as its job folder's channels or the snapshot id in the job's name say, so that a recent
   job's evaluation, publication or rerun still finds its snapshot;
4. *recent*: it is one of the ``RECFLOW_RETENTION_KEEP_LAST`` most recently modified items of
   its kind that 1-3 do not keep ("modified": the newest write to any of its files, the file's
   mtime or the S3 object's ``LastModified``);
5. *young*: it was modified less than ``RECFLOW_RETENTION_MIN_AGE_HOURS`` ago, so a run that is
   between writing it and referencing it (a snapshot taken, its job not yet launched) keeps it.

Everything else is a candidate. A SageMaker job leaves no local folder: until it writes its first
checkpoint, only rules 4 and 5 keep the snapshot it reads. Nothing outside those six folders is
listed or deleted (MLflow's run artifacts, the SageMaker registry's records and the locks are their
owners'), nor their hidden entries (a write in progress, a launch's lock), and a registry with no version at all stops a deletion
(a :class:`~recflow.core.errors.ConfigError`): it more likely means a wrong ``RECFLOW_MLFLOW_TRACKING_URI`` than
a project that never published.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlparse

import humanize

from recflow.core.artifacts import ArtifactStore, LocalArtifactStore, StoredObject, join, store_for
from recflow.core.config import Settings
from recflow.core.errors import ConfigError, RecflowError
from recflow.registry import JOB_KEY, ModelVersionInfo, missing_registry, registry_for
from recflow.training.backend import TERMINAL_STATES
from recflow.training.spec import base_name

log = logging.getLogger(__name__)
_SNAPSHOT_PREFIX: Final = re.compile(r"[0-9a-f]{12}")

ARTIFACT_KINDS: Final = ("snapshots", "checkpoints", "models", "serving", "evaluations")
"""Folders of the artifact root that the pipeline fills; each child is one item."""
JOBS: Final = "jobs"
KINDS: Final = (*ARTIFACT_KINDS, JOBS)
JOB_KEYED: Final = frozenset({"checkpoints", "models", "serving", "evaluations", JOBS})
"""Kinds whose item is named by a training job (``evaluations``: ``<job>/`` or, earlier, ``<job>.json``)."""


@dataclass(frozen=True)
class Item:
    """One snapshot, checkpoint folder, model archive, serving archive, evaluation or job folder."""

    kind: str
    name: str
    uri: str
    files: int
    size: int
    modified: datetime
    keep: bool
    why: str
    """Why it is kept (``referenced by recsys-demo v3 (snapshot_id)``), or why it is deletable."""

    def age(self, now: datetime) -> timedelta:
        return now - self.modified

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "uri": self.uri,
            "files": self.files,
            "bytes": self.size,
            "modified": self.modified.isoformat(timespec="seconds"),
            "age_hours": round(self.age(now).total_seconds() / 3600, 1),
            "keep": self.keep,
            "why": self.why,
        }


@dataclass(frozen=True)
class Plan:
    """Every item found, each kept or deletable with its reason, and the policy that decided."""

    items: list[Item]
    keep_last: int
    min_age_hours: int
    versions: int
    """Registered versions read (of every model)."""
    now: datetime
    roots: dict[str, str] = field(default_factory=dict)
    """Where each kind lives (its folder URI)."""

    @property
    def deletable(self) -> list[Item]:
        return [i for i in self.items if not i.keep]

    @property
    def deletable_bytes(self) -> int:
        return sum(i.size for i in self.deletable)


@dataclass
class _References:
    """What must be kept, and why: snapshot ids, job base names, URIs."""

    snapshots: dict[str, str] = field(default_factory=dict)
    snapshot_prefixes: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)
    uris: dict[str, str] = field(default_factory=dict)

    def add(self, why: str, snapshot: str = "", job: str = "", uris: Iterable[str] = ()) -> None:
        if snapshot:
            self.snapshots.setdefault(snapshot, why)
        if job:
            self.jobs.setdefault(base_name(job), why)
        for uri in uris:
            self.uris.setdefault(uri, why)

    def reason(self, kind: str, name: str, uri: str) -> str | None:
        if kind == "snapshots" and name in self.snapshots:
            return self.snapshots[name]
        if kind == "snapshots" and name[:12] in self.snapshot_prefixes:
            return self.snapshot_prefixes[name[:12]]
        if kind in JOB_KEYED and base_name(name) in self.jobs:
            return self.jobs[base_name(name)]
        inside = uri.rstrip("/") + "/"
        return next((w for u, w in self.uris.items() if u == uri or u.startswith(inside)), None)


def _lineage_uris(version: ModelVersionInfo) -> list[str]:
    values = [*version.lineage.values(), version.source]
    return [u.strip() for v in values for u in v.split(" + ") if "://" in u]


def registered(versions: Sequence[ModelVersionInfo]) -> _References:
    refs = _References()
    for v in versions:
        why = f"referenced by {v.name} v{v.version}" + (f" [{','.join(v.aliases)}]" if v.aliases else "")
        refs.add(
            why,
            snapshot=v.lineage.get("snapshot_id", ""),
            job=v.lineage.get(JOB_KEY, ""),
            uris=_lineage_uris(v),
        )
    return refs


def in_flight(jobs_dir: Path) -> _References:
    """What the local training jobs that have not ended use."""
    refs = _References()
    if not jobs_dir.is_dir():
        return refs
    for folder in sorted(p for p in jobs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        status = _job_status(folder)
        if status in TERMINAL_STATES:
            continue
        why = f"in use by training job {folder.name} ({status or 'no description.json: launching'})"
        refs.add(why, job=folder.name, uris=_channels(folder))
    return refs


def _channels(job_folder: Path) -> list[str]:
    """The input channels' URIs (the snapshot's folders) of a local job's ``request.json``."""
    request = _read_json(job_folder / "request.json")
    channels = [
        str(c.get("DataSource", {}).get("S3DataSource", {}).get("S3Uri", ""))
        for c in request.get("InputDataConfig", [])
    ]
    return [c for c in channels if c]


def _trained_on(kept: Iterable[Item]) -> _References:
    """The snapshots that kept job items were trained on: named by a job folder's channels, and by every
    job's name (``<prefix>-<snapshot id[:12]>-<code>-<hyperparameters>``, :func:`recflow.training.spec.job_name`)."""
    refs = _References()
    for item in kept:
        why = f"trained on by the kept {item.kind} item {item.name}"
        if item.kind == JOBS:
            refs.add(why, uris=_channels(Path(unquote(urlparse(item.uri).path))))
        parts = base_name(item.name).rsplit("-", 3)
        if len(parts) == 4 and _SNAPSHOT_PREFIX.fullmatch(parts[1]):
            refs.snapshot_prefixes.setdefault(parts[1], why)
    return refs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _job_status(folder: Path) -> str:
    return str(_read_json(folder / "description.json").get("TrainingJobStatus", ""))


def _items_of(
    kind: str, root: str, objects: Sequence[StoredObject]
) -> list[tuple[str, str, list[StoredObject]]]:
    """``(name, uri, objects)`` per child of ``root``; hidden children (writes in progress, locks) left out."""
    by_child: dict[str, list[StoredObject]] = {}
    prefix = root.rstrip("/") + "/"
    for obj in objects:
        child = obj.uri.removeprefix(prefix).split("/", 1)[0]
        if child and not child.startswith("."):
            by_child.setdefault(child, []).append(obj)
    found = []
    for child, objs in sorted(by_child.items()):
        is_file = len(objs) == 1 and objs[0].uri == prefix + child
        name = child.removesuffix(".json") if kind == "evaluations" and is_file else child
        found.append((name, prefix + child, objs))
    return found


def registered_versions(settings: Settings) -> list[ModelVersionInfo]:
    """Every version of every model of the configured registry; none, without creating it, when the
    embedded MLflow database does not exist yet (a dry run writes nothing)."""
    if missing_registry(settings) is not None:
        return []
    return registry_for(settings).list_versions()


def kind_roots(settings: Settings) -> dict[str, str]:
    roots = {kind: join(settings.artifacts_uri, kind) for kind in ARTIFACT_KINDS}
    roots[JOBS] = settings.jobs_dir.as_uri()
    return roots


def _store(settings: Settings, kind: str, root: str) -> ArtifactStore:
    return LocalArtifactStore() if kind == JOBS else store_for(settings, root)


def plan(
    settings: Settings, *, versions: Sequence[ModelVersionInfo] | None = None, now: datetime | None = None
) -> Plan:
    """Decide, for every item of :data:`KINDS`, whether it is kept (and why) or deletable (and why).

    ``versions`` default: every version of every model of the configured registry. Deletes nothing."""
    now = now or datetime.now(UTC)
    if versions is None:
        versions = registered_versions(settings)
    refs, busy = registered(versions), in_flight(settings.jobs_dir)
    young = timedelta(hours=settings.retention_min_age_hours)
    roots = kind_roots(settings)
    items: list[Item] = []
    for kind in sorted(roots, key=lambda k: k == "snapshots"):  # snapshots last: kept jobs keep theirs
        root = roots[kind]
        used = _trained_on(i for i in items if i.keep) if kind == "snapshots" else _References()
        found = []
        for name, uri, objs in _items_of(kind, root, _store(settings, kind, root).list_objects(root)):
            modified = max(o.modified for o in objs)
            why = refs.reason(kind, name, uri) or busy.reason(kind, name, uri) or used.reason(kind, name, uri)
            found.append(
                Item(
                    kind,
                    name,
                    uri,
                    len(objs),
                    sum(o.size for o in objs),
                    modified,
                    why is not None,
                    why or "",
                )
            )
        rest = sorted((i for i in found if not i.keep), key=lambda i: (i.modified, i.name), reverse=True)
        decided = {i.uri: i for i in found if i.keep}
        for rank, item in enumerate(rest, start=1):
            decided[item.uri] = _decide(item, rank, settings.retention_keep_last, young, now)
        items += sorted(decided.values(), key=lambda i: i.modified, reverse=True)
    return Plan(
        items, settings.retention_keep_last, settings.retention_min_age_hours, len(versions), now, roots
    )


def _decide(item: Item, rank: int, keep_last: int, young: timedelta, now: datetime) -> Item:
    """An unreferenced, unused item, ``rank``-th most recent of its kind."""
    kind = item.kind
    if rank <= keep_last:
        why = f"one of the {keep_last} most recent unreferenced {kind} (RECFLOW_RETENTION_KEEP_LAST)"
        return _with(item, keep=True, why=why)
    if item.age(now) < young:
        hours = int(young.total_seconds() // 3600)
        why = f"modified under {hours}h ago (RECFLOW_RETENTION_MIN_AGE_HOURS)"
        return _with(item, keep=True, why=why)
    why = (
        f"no registered version references it, no running or kept job reads it, "
        f"and {rank - 1} such {kind} are more recent"
    )
    return _with(item, keep=False, why=why)


def _with(item: Item, *, keep: bool, why: str) -> Item:
    return replace(item, keep=keep, why=why)


def collect(settings: Settings, decided: Plan, *, allow_empty_registry: bool = False) -> list[Item]:
    """Delete the deletable items of ``decided``; returns them. Raises :class:`ConfigError` when the
    registry had no version (unless ``allow_empty_registry``), before deleting anything."""
    doomed = decided.deletable
    if doomed and decided.versions == 0 and not allow_empty_registry:
        raise ConfigError(
            f"the registry ({settings.registry_backend}: {_registry_location(settings)}) has no model version, "
            f"so nothing would be kept as referenced: refusing to delete {len(doomed)} item(s). Check "
            "RECFLOW_MLFLOW_TRACKING_URI / RECFLOW_REGISTRY_BACKEND; if no model was ever published, "
            "rerun with --allow-empty-registry"
        )
    for item in doomed:
        root = decided.roots[item.kind].rstrip("/") + "/"
        if not item.uri.startswith(root) or "/" in item.uri.removeprefix(root):
            raise RecflowError(f"{item.uri} is not an item of {root}: refusing to delete it (a bug)")
        deleted = _store(settings, item.kind, root).delete_tree(item.uri)
        log.info("gc: deleted %s %s (%d file(s), %d bytes)", item.kind, item.uri, deleted, item.size)
    return doomed


def _registry_location(settings: Settings) -> str:
    return settings.mlflow_uri if settings.registry_backend == "mlflow" else settings.aws_region


def totals(items: Iterable[Item]) -> Mapping[str, tuple[int, int]]:
    """``{kind: (count, bytes)}`` of ``items``."""
    out: dict[str, tuple[int, int]] = {}
    for item in items:
        count, size = out.get(item.kind, (0, 0))
        out[item.kind] = (count + 1, size + item.size)
    return out


def report_lines(decided: Plan, *, deleted: bool, show_kept: bool = False) -> list[str]:
    """What ``recflow gc`` prints: one line per deletable item (kind, location, size, age, why), the
    totals, and with ``show_kept`` every kept item and why."""

    def line(item: Item) -> str:
        age = humanize.naturaldelta(item.age(decided.now))
        size = humanize.naturalsize(item.size, binary=True)
        return f"  {item.kind:<12} {item.uri}  {size}, {item.files} file(s), modified {age} ago: {item.why}"

    doomed = decided.deletable
    verb = "deleted" if deleted else "would delete"
    lines = [
        f"retention: keep what any of {decided.versions} registered version(s) references, what a running "
        f"job uses, the {decided.keep_last} most recent unreferenced of each kind, and anything modified "
        f"under {decided.min_age_hours}h ago"
    ]
    lines += [f"{verb}:"] + [line(i) for i in doomed] if doomed else ["nothing to delete"]
    by_kind = totals(doomed)
    lines.append(
        f"{verb} {len(doomed)} item(s), {humanize.naturalsize(decided.deletable_bytes, binary=True)}"
        + (" (" + ", ".join(f"{k} {n}" for k, (n, _) in sorted(by_kind.items())) + ")" if by_kind else "")
        + f"; kept {len(decided.items) - len(doomed)}"
    )
    if show_kept:
        lines += ["kept:"] + [line(i) for i in decided.items if i.keep]
    return lines
