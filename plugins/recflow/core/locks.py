"""Objects written only on a condition, and leased locks made of them, in the artifact store.

A champion move must not interleave with another (:mod:`recflow.registry`), and MLflow's tags
offer no compare-and-set, so movers take a lock. It lives in the artifact store because every
process that moves a champion already writes there (``file://`` on one machine, ``s3://``
shared by many), and both give an atomic "create only if absent": a hard link on a local disk,
a conditional ``PutObject`` (``If-None-Match: *``) on S3. No library in the environment leases
a lock on S3; ``filelock`` (an OS lock) guards the local take-over and release, and cannot be
the lock itself because an OS lock neither reaches S3 nor names its holder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from filelock import FileLock

from recflow.core.artifacts import aws_client, aws_error_code
from recflow.core.config import Settings

log = logging.getLogger(__name__)
LEASE_SECONDS = 120.0
"""How long a lock taken by :func:`lease` lasts: a holder that crashed blocks the others this long at most."""
WAIT_SECONDS = 150.0
"""How long :func:`lease` waits for a held lock: longer than a lease, so a crashed holder's runs out first."""
_CONFLICT = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
"""S3's answers to a conditional write whose condition does not hold (or raced another one)."""
_MISSING = ("NoSuchKey", "404")


class _Conditional(Protocol):
    """One object written only on a condition: what a lock or a record that must not be overwritten needs."""

    def create(self, data: bytes) -> str | None:
        """Write ``data`` only if the object does not exist: its tag, or ``None`` when it exists."""
        ...

    def read(self) -> tuple[bytes, str] | None:
        """The object's content and tag, or ``None`` when it does not exist."""
        ...

    def replace(self, tag: str, data: bytes) -> str | None:
        """Write ``data`` only if the object's tag still is ``tag``: the new tag, or ``None``."""
        ...

    def delete(self, tag: str) -> bool:
        """Delete the object if its tag still is ``tag``."""
        ...


@dataclass(frozen=True)
class _LocalObject:
    """A file: created by a hard link (atomic, refused when the name exists, never seen half written);
    replaced and deleted under an OS lock on a hidden guard file beside it (``filelock``)."""

    path: Path

    @staticmethod
    def _tag(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def _staged(self, data: bytes) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staged = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        staged.write_bytes(data)
        return staged

    def _guard(self) -> Any:
        return FileLock(str(self.path.with_name(f".{self.path.name}.guard")))

    def create(self, data: bytes) -> str | None:
        staged = self._staged(data)
        try:
            os.link(staged, self.path)
        except FileExistsError:
            return None
        finally:
            staged.unlink()
        return self._tag(data)

    def read(self) -> tuple[bytes, str] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, self._tag(data)

    def replace(self, tag: str, data: bytes) -> str | None:
        with self._guard():
            current = self.read()
            if current is None or current[1] != tag:
                return None
            self._staged(data).replace(self.path)
        return self._tag(data)

    def delete(self, tag: str) -> bool:
        with self._guard():
            current = self.read()
            if current is None or current[1] != tag:
                return False
            self.path.unlink()
        return True


@dataclass(frozen=True)
class _S3Object:
    """An S3 object written with S3's conditional writes (``If-None-Match: *`` to create, ``If-Match: <ETag>``
    to replace; AWS honours both since 2024, as moto does)."""

    client: Any
    bucket: str
    key: str

    def _put(self, data: bytes, **condition: str) -> str | None:
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)
        except Exception as exc:
            if aws_error_code(exc) in (*_CONFLICT, *_MISSING):
                return None
            raise
        return str(response["ETag"])

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes, str] | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            if aws_error_code(exc) in _MISSING:
                return None
            raise
        return response["Body"].read(), str(response["ETag"])

    def replace(self, tag: str, data: bytes) -> str | None:
        return self._put(data, IfMatch=tag)

    def delete(self, tag: str) -> bool:
        # read, then delete: not one conditional call (a conditional DeleteObject is recent on S3);
        # :func:`lease` bounds what this window can cost (see there)
        current = self.read()
        if current is None or current[1] != tag:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=self.key)
        return True


def _conditional(settings: Settings, uri: str) -> _Conditional:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return _LocalObject(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        return _S3Object(aws_client(settings, "s3"), parsed.netloc, parsed.path.lstrip("/"))
    raise ValueError(f"artifact URI {uri!r}: scheme {parsed.scheme!r} is not file or s3")


def create_if_absent(settings: Settings, uri: str, data: bytes) -> bool:
    """Write ``data`` at ``uri`` only if nothing is there, in one atomic step: whether it was written."""
    return _conditional(settings, uri).create(data) is not None


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: ``owner`` (what the taker said, its host and process), a ``token`` unique to
    that taking, and when its lease began and ends (seconds since the epoch, on the taker's clock)."""

    owner: str
    token: str
    acquired_at: float
    expires_at: float

    def describe(self) -> str:
        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

        return f"{self.owner} (since {iso(self.acquired_at)}, lease until {iso(self.expires_at)})"

    def document(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes) -> LockHolder | None:
        """The holder ``data`` names, or ``None`` when it is not a lock's document (then it is no lease)."""
        try:
            raw = json.loads(data)
            return cls(
                str(raw["owner"]), str(raw["token"]), float(raw["acquired_at"]), float(raw["expires_at"])
            )
        except (ValueError, KeyError, TypeError):
            return None


class LockTimeout(TimeoutError):
    """A lock stayed held by another past the wait; ``holder`` is who held it."""

    def __init__(self, uri: str, holder: LockHolder, waited: float) -> None:
        super().__init__(
            f"lock {uri} is held by {holder.describe()}; waited {waited:.0f} s for it. If that holder "
            "crashed, its lease runs out at the time shown: retry then"
        )
        self.uri = uri
        self.holder = holder


class LockLost(RuntimeError):
    """A holder found its lock taken over by another (its lease had run out) before it finished."""


@dataclass(frozen=True)
class Lease:
    """A lock held (:func:`lease`): ``holder`` is this taking."""

    uri: str
    holder: LockHolder
    _object: _Conditional
    _tag: str

    def check(self) -> None:
        """Raise :class:`LockLost` unless this lease still holds the lock (call it before a write that
        must not interleave with another holder's)."""
        current = self._object.read()
        if current is None or current[1] != self._tag:
            other = LockHolder.parse(current[0]) if current is not None else None
            raise LockLost(
                f"lock {self.uri} of {self.holder.owner} was taken over after its lease ran out, now held by "
                + (other.describe() if other else "nobody")
            )


def _take(
    settings: Settings, uri: str, owner: str, lease_seconds: float, wait_seconds: float, poll_seconds: float
) -> Lease:
    target = _conditional(settings, uri)
    owner = f"{owner} ({socket.gethostname()}:{os.getpid()})"
    deadline = time.monotonic() + wait_seconds
    delay = poll_seconds
    while True:
        now = time.time()
        mine = LockHolder(owner, uuid.uuid4().hex, now, now + lease_seconds)
        tag = target.create(mine.document())
        if tag is not None:
            return Lease(uri, mine, target, tag)
        current = target.read()
        if current is None:
            continue  # released in between
        holder = LockHolder.parse(current[0])
        if holder is None or holder.expires_at <= now:
            tag = target.replace(current[1], mine.document())
            if tag is not None:
                log.warning(
                    "took over lock %s: its holder's lease ran out (%s)",
                    uri,
                    holder.describe() if holder else "not a lock's document",
                )
                return Lease(uri, mine, target, tag)
            continue  # another took it over first, or it was released
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockTimeout(uri, holder, wait_seconds)
        time.sleep(min(delay, left))
        delay = min(delay * 2, 2.0)


@contextmanager
def lease(
    settings: Settings,
    uri: str,
    owner: str,
    *,
    lease_seconds: float = LEASE_SECONDS,
    wait_seconds: float = WAIT_SECONDS,
    poll_seconds: float = 0.1,
) -> Iterator[Lease]:
    """Hold the lock ``uri`` (an object of the artifact store, ``file://`` or ``s3://``) for the block.

    Taking it creates the object only if absent (a hard link on a local disk, ``If-None-Match: *``
    on S3), holding the owner's name, a token and the lease's end. A held lock is waited for, up to
    ``wait_seconds`` (then :class:`LockTimeout`, naming the holder); one whose lease ran out (a
    holder that crashed) is taken over by replacing exactly the document read (``If-Match`` on S3,
    under an OS file lock on a local disk), so of several waiters one gets it. Leaving the block
    deletes the lock if it still is this lease's (a lease taken over is left to its new holder).

    The bound: a crashed holder blocks others for ``lease_seconds`` at most, plus the clock skew
    between machines. A live holder must finish within its lease; :meth:`Lease.check` tells it
    whether it still holds the lock. The lock serializes well-behaved writers only: whoever
    writes without it (a person in a console) is not stopped.
    """
    held = _take(settings, uri, owner, lease_seconds, wait_seconds, poll_seconds)
    try:
        yield held
    finally:
        if not held._object.delete(held._tag):
            log.warning("lock %s of %s was taken over before it was released", uri, held.holder.owner)
