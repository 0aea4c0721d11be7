"""Which stores recflow made itself, so that its synthetic data never lands in anyone else's.

``recflow generate``, ``recflow load movielens``, ``recflow demo`` and the benchmarks write throwaway
data (synthetic, or a public data set's ratings as events): Parquet
partitions (replacing the files of a day), catalogues, a warehouse, artifacts, model
versions. They may do so only in a store they made. When one of them creates a store's
folder it leaves :data:`MARKER` there (a small JSON: which command, when); later it
writes into a folder that does not exist yet, an empty one, or one with the marker,
and refuses anything else with a :class:`StoreNotOwned` that names the setting, before
it has touched a single store. A server store (a PostgreSQL warehouse, an MLflow
server, an ``s3://`` root, SageMaker's registry) cannot carry a marker, so it is
always refused; the Spark cluster ``recflow spark up`` runs on this machine is a folder it made.

An embedded ``RECFLOW_HOME`` is recflow's own: the stores at their default places
inside it (no setting moves them) are adopted, marker written, by ``recflow setup``
and by the commands above, so a home made by an older ``recflow setup`` keeps working.
A store a setting points at elsewhere (``RECFLOW_LANDING_DIR``, ``RECFLOW_WAREHOUSE_PATH``,
a ``file://`` ``RECFLOW_ARTIFACT_ROOT``, a SQLite ``RECFLOW_MLFLOW_TRACKING_URI``) is
never adopted: it may be the producers' shared zone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recflow.core.artifacts import file_uri_path
from recflow.core.config import Settings
from recflow.core.errors import ConfigError
from recflow.core.urls import shown_url

MARKER = ".recflow-owned"
"""The file a store's folder holds when recflow created the store for synthetic data."""


class StoreNotOwned(ConfigError):
    """A command that writes synthetic data was pointed at a store recflow did not create."""


@dataclass(frozen=True)
class Store:
    """One place a command writes: a local folder recflow can own, or a server it cannot."""

    kind: str
    """What it is, in words: ``landing zone``, ``warehouse``, ``artifact root``, ``MLflow store``."""
    setting: str
    """The setting that puts it there (``RECFLOW_HOME`` for a default place inside the home; empty
    for a folder a library caller passed)."""
    location: str
    """The setting's value as given: a path or a URI."""
    folder: Path | None
    """The folder the marker goes into; ``None`` for a server store."""
    in_home: bool = False
    """At its default place inside an embedded ``RECFLOW_HOME``: recflow's own, adopted if unmarked."""


def owner(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder`` (which command made it, when), or ``None`` when it has none."""
    try:
        found = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def mark(folder: Path, command: str) -> None:
    """Create ``folder`` if need be and record that ``command`` made it (an existing marker stays)."""
    folder.mkdir(parents=True, exist_ok=True)
    if owner(folder) is None:
        record = {"created_by": command, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        (folder / MARKER).write_text(json.dumps(record) + "\n")


def _refusal(store: Store) -> str | None:
    """Why ``store`` may not be written by a command of synthetic data, or ``None`` when it may."""
    given = f"{store.setting}={store.location}: " if store.setting else ""
    if store.folder is None:
        return (
            f"{given}the {store.kind} is a server recflow did not create; throwaway data only goes "
            "to local stores it made (unset the setting to use the embedded home's own)"
        )
    folder = store.folder
    if store.in_home or not folder.exists() or owner(folder) is not None:
        return None
    if not folder.is_dir():
        return f"{given}the {store.kind} {folder} is not a folder"
    if any(folder.iterdir()):
        return (
            f"{given}the {store.kind} {folder} was not created by recflow (no {MARKER} in it) and is "
            "not empty: point it at an empty or recflow-created folder"
        )
    return None


def claim(stores: Sequence[Store], command: str) -> None:
    """Make every store of ``stores`` this command's, or refuse them all before touching any.

    A folder that does not exist is created, an empty or home one adopted, each with the
    marker; a marked one is written as it is. Raises :class:`StoreNotOwned` naming each
    refused store's setting and folder."""
    refused = [reason for reason in map(_refusal, stores) if reason]
    if refused:
        raise StoreNotOwned(
            f"{command} refused to write into a store recflow did not create:\n  " + "\n  ".join(refused)
        )
    for store in stores:
        if store.folder is not None:
            mark(store.folder, command)


def folder_store(folder: Path, kind: str = "landing zone") -> Store:
    """A folder given directly (by a library caller, no setting), named by its path alone."""
    return Store(kind, "", str(folder), folder)


def _local_path(uri: str) -> Path | None:
    """The local folder or file of a ``file://`` URI, a SQLite URL or a bare path; ``None`` for a server."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("file://"):  # the artifact store's reading: percent-escapes decoded
        return file_uri_path(uri)
    return None if "://" in uri else Path(uri)


def landing_store(settings: Settings) -> Store:
    if settings.landing_path is not None:
        return Store("landing zone", "RECFLOW_LANDING_DIR", str(settings.landing_path), settings.landing_path)
    return Store(
        "landing zone", "RECFLOW_HOME", str(settings.home), settings.landing_dir, _embedded(settings)
    )


def pipeline_stores(settings: Settings) -> list[Store]:
    """Every store the pipeline writes under ``settings``: landing zone, warehouse, artifacts, registry."""
    home, in_home = str(settings.home), _embedded(settings)
    stores = [landing_store(settings)]
    if settings.warehouse_url and settings.spark.serves(settings.home, settings.warehouse_url):
        # the local Spark cluster `recflow spark up` runs: its folder (warehouse directory, metastore) is ours
        cluster = settings.spark.directory(settings.home)
        stores.append(Store("warehouse", "RECFLOW_WAREHOUSE_URL", settings.warehouse_url, cluster))
    elif settings.warehouse_url:
        stores.append(Store("warehouse", "RECFLOW_WAREHOUSE_URL", shown_url(settings.warehouse_url), None))
    elif settings.warehouse_path is not None:
        path = settings.warehouse_path
        stores.append(Store("warehouse", "RECFLOW_WAREHOUSE_PATH", str(path), path.parent))
    else:
        stores.append(Store("warehouse", "RECFLOW_HOME", home, settings.duckdb_path.parent, in_home))
    if settings.artifact_root is None:
        stores.append(Store("artifact root", "RECFLOW_HOME", home, settings.home / "artifacts", in_home))
    else:
        root = _local_path(settings.artifact_root)
        stores.append(Store("artifact root", "RECFLOW_ARTIFACT_ROOT", settings.artifact_root, root))
    if settings.registry_backend != "mlflow":
        stores.append(Store("model registry", "RECFLOW_REGISTRY_BACKEND", settings.registry_backend, None))
    elif settings.mlflow_tracking_uri is None:
        stores.append(Store("MLflow store", "RECFLOW_HOME", home, settings.home / "mlflow", in_home))
    else:
        uri = settings.mlflow_tracking_uri
        db = _local_path(uri)
        folder = db.parent if db is not None and uri.startswith("sqlite:") else db
        stores.append(Store("MLflow store", "RECFLOW_MLFLOW_TRACKING_URI", shown_url(uri), folder))
    return stores


def adopt_home_stores(settings: Settings, command: str) -> None:
    """Mark the stores at their default places inside an embedded home (``recflow setup`` made them,
    perhaps before markers existed); stores a setting points elsewhere are left alone."""
    for store in pipeline_stores(settings):
        if store.in_home and store.folder is not None and store.folder.is_dir():
            mark(store.folder, command)


def private_home(base: Settings, home: Path) -> Settings:
    """``base`` with every store inside ``home``: a benchmark's own landing zone, DuckDB warehouse,
    artifacts, MLflow store and Airflow, an embedded home with local training, whatever the
    caller's settings point the pipeline at (its landing zone, server warehouse, S3 root, registry).
    The stores of a child process follow through ``Settings.child_env``."""
    return replace(
        base,
        home=home,
        profile="embedded",
        landing_path=None,
        warehouse_path=None,
        warehouse_url=None,
        dbt_target="duckdb",
        artifact_root=None,
        mlflow_tracking_uri=None,
        registry_backend="mlflow",
        training_backend="local",
        incidents_url=None,
    )


def _embedded(settings: Settings) -> bool:
    return settings.profile == "embedded"
