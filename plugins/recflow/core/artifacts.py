"""The artifact store: files addressed by URI, on the local disk (``file://``) or S3 (``s3://``).

Tasks exchange artifacts only through URIs of this store, never through local
paths, so that any worker (or a SageMaker job) can read what another wrote.
"""

from __future__ import annotations

import functools
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar
from urllib.parse import unquote, urlparse

from recflow.core.config import Settings
from recflow.core.errors import ConfigError


@dataclass(frozen=True)
class StoredObject:
    """One object of the store, as a listing reports it (for accounting: what, how big, how old)."""

    uri: str
    size: int
    modified: datetime
    """When it was last written (UTC): a file's mtime, an S3 object's ``LastModified``."""


StoredObjects = list[StoredObject]
"""A listing with sizes and times (inside a store class, ``list`` names its method)."""


class ArtifactStore(Protocol):
    def put_file(self, local: Path, uri: str) -> str: ...
    def get_file(self, uri: str, local: Path) -> Path: ...
    def exists(self, uri: str) -> bool: ...
    def put_bytes(self, data: bytes, uri: str) -> str: ...
    def get_bytes(self, uri: str) -> bytes: ...
    def list(self, prefix_uri: str) -> list[str]: ...
    def list_objects(self, prefix_uri: str) -> StoredObjects:
        """Every object under the folder ``prefix_uri`` (hidden files too), with its size and time."""
        ...

    def delete_tree(self, uri: str) -> int:
        """Delete the object ``uri``, or every object under the folder ``uri``; how many were deleted."""
        ...


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def file_uri_path(uri: str) -> Path:
    """The local path of a ``file://`` URI (``ValueError`` for any other scheme)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ValueError(f"not a file:// URI: {uri!r}")
    return Path(unquote(parsed.path))


class LocalArtifactStore:
    """``file://`` URIs; writes go through a temporary file and a rename, so readers never see half a file."""

    @staticmethod
    def _write(uri: str, write: Callable[[Path], object]) -> str:
        target = file_uri_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        write(tmp)
        tmp.replace(target)
        return uri

    @staticmethod
    def _existing(uri: str) -> Path:
        source = file_uri_path(uri)
        if not source.exists():
            raise FileNotFoundError(f"artifact {uri} does not exist")
        return source

    def put_file(self, local: Path, uri: str) -> str:
        return self._write(uri, lambda tmp: shutil.copyfile(local, tmp))

    def put_bytes(self, data: bytes, uri: str) -> str:
        return self._write(uri, lambda tmp: tmp.write_bytes(data))

    def get_file(self, uri: str, local: Path) -> Path:
        source = self._existing(uri)
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, local)
        return local

    def get_bytes(self, uri: str) -> bytes:
        return self._existing(uri).read_bytes()

    def exists(self, uri: str) -> bool:
        return file_uri_path(uri).exists()

    def list(self, prefix_uri: str) -> list[str]:
        root = file_uri_path(prefix_uri)
        if not root.exists():
            return []
        return sorted(p.as_uri() for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def list_objects(self, prefix_uri: str) -> StoredObjects:
        found = []
        for folder, _, files in os.walk(file_uri_path(prefix_uri)):  # symlinked folders are not followed
            for name in files:
                stat = (Path(folder) / name).lstat()
                modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                found.append(StoredObject((Path(folder) / name).as_uri(), stat.st_size, modified))
        return sorted(found, key=lambda o: o.uri)

    def delete_tree(self, uri: str) -> int:
        target = file_uri_path(uri)
        if target.is_dir() and not target.is_symlink():
            count = sum(len(files) for _, _, files in os.walk(target))
            shutil.rmtree(target)
            return count
        if target.is_symlink() or target.exists():
            target.unlink()
            return 1
        return 0


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _bucket_must_exist(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A bucket that does not exist is a setting to fix (``ConfigError``: not retried, the Configuration
    section), not an infrastructure failure retried to no end: S3 answers ``NoSuchBucket`` (for an
    upload, inside boto3's ``S3UploadFailedError``). An object a read asks for that is not there is a
    ``FileNotFoundError`` naming it, as on the local store (S3's own words, ``An error occurred (404) when
    calling the HeadObject operation: Not Found``, name no key)."""

    @functools.wraps(method)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except ConfigError:  # said already, by a method this one called
            raise
        except Exception as exc:
            uri = next(
                (a for a in (*args, *kwargs.values()) if isinstance(a, str) and a.startswith("s3://")), ""
            )
            code = aws_error_code(exc)
            bucket = urlparse(uri).netloc
            missing_bucket = ConfigError(
                f"the S3 bucket {bucket!r} does not exist ({uri}: {exc}): create it, or fix the setting "
                "that names it (the artifact store's is RECFLOW_ARTIFACT_ROOT, s3://bucket/prefix)"
            )
            if code == "NoSuchBucket" or "(NoSuchBucket)" in str(exc):
                raise missing_bucket from exc
            if code in ("NoSuchKey", "404") and method.__name__ in ("get_file", "get_bytes"):
                # HeadObject (get_file's first request) answers 404 for a bucket that does not exist too
                if code == "404" and not _bucket_exists(args[0], bucket):
                    raise missing_bucket from exc
                raise FileNotFoundError(f"artifact {uri} does not exist") from exc
            raise

    return checked


def _bucket_exists(store: Any, bucket: str) -> bool:
    """Whether S3 knows ``bucket`` (another error than its absence counts as yes: the key's 404 stands)."""
    try:
        store.client.head_bucket(Bucket=bucket)
    except Exception as exc:
        return aws_error_code(exc) not in ("404", "NoSuchBucket")
    return True


@dataclass
class S3ArtifactStore:
    client: Any

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        if parsed.scheme != "s3":
            raise ValueError(f"not an s3:// URI: {uri!r}")
        return parsed.netloc, parsed.path.lstrip("/")

    @_bucket_must_exist
    def put_file(self, local: Path, uri: str) -> str:
        bucket, key = self._split(uri)
        self.client.upload_file(str(local), bucket, key)
        return uri

    @_bucket_must_exist
    def put_bytes(self, data: bytes, uri: str) -> str:
        bucket, key = self._split(uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return uri

    @_bucket_must_exist
    def get_file(self, uri: str, local: Path) -> Path:
        bucket, key = self._split(uri)
        local.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(bucket, key, str(local))
        return local

    @_bucket_must_exist
    def get_bytes(self, uri: str) -> bytes:
        bucket, key = self._split(uri)
        body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    @_bucket_must_exist
    def exists(self, uri: str) -> bool:
        bucket, key = self._split(uri)
        response = self.client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(obj["Key"] == key for obj in response.get("Contents", []))

    @_bucket_must_exist
    def list(self, prefix_uri: str) -> list[str]:
        bucket, prefix = self._split(prefix_uri)
        paginator = self.client.get_paginator("list_objects_v2")
        keys = [
            obj["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        ]
        return sorted(f"s3://{bucket}/{key}" for key in keys)

    @_bucket_must_exist
    def list_objects(self, prefix_uri: str) -> StoredObjects:
        bucket, prefix = self._split(prefix_uri.rstrip("/") + "/")
        paginator = self.client.get_paginator("list_objects_v2")
        return sorted(
            (
                StoredObject(
                    f"s3://{bucket}/{obj['Key']}", int(obj["Size"]), obj["LastModified"].astimezone(UTC)
                )
                for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                for obj in page.get("Contents", [])
            ),
            key=lambda o: o.uri,
        )

    @_bucket_must_exist
    def delete_tree(self, uri: str) -> int:
        bucket, key = self._split(uri)
        keys = [key] if self.exists(uri) else [self._split(o.uri)[1] for o in self.list_objects(uri)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            response = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise OSError(
                    f"S3 refused to delete {len(errors)} object(s) under {uri}, e.g. "
                    f"s3://{bucket}/{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
        return len(keys)


def pack_directory(directory: Path, archive: Path) -> Path:
    """``directory``'s entries (not the folder itself) in a ``.tar.gz``: the layout of SageMaker's
    ``model.tar.gz``, which every consumer unpacks with :func:`unpack_model`."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


def aws_error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for any other exception)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def aws_client(settings: Settings, service: str) -> Any:
    import boto3  # noqa: PLC0415 (boto3 only on the production profile's s3:// store)

    return boto3.client(service, region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)


def store_for(settings: Settings, uri: str | None = None) -> ArtifactStore:
    """The store that serves ``uri`` (default: the configured artifact root)."""
    scheme = urlparse(uri or settings.artifacts_uri).scheme
    if scheme == "file":
        return LocalArtifactStore()
    if scheme == "s3":
        return S3ArtifactStore(aws_client(settings, "s3"))
    raise ValueError(f"artifact URI {uri or settings.artifacts_uri!r}: scheme {scheme!r} is not file or s3")


def unpack_model(archive: Path, target: Path) -> Path:
    """Unpack a training job's ``model.tar.gz`` (refusing paths that escape ``target``)."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target
