"""The leased lock champion moves take (``recflow.core.locks``), on a local artifact root.

``tests/services/test_sagemaker_registry.py`` runs the same checks on S3 (moto's server, the
names of :data:`CHECKS`). What
each check reads back (the lock's document, a counter) is read through the artifact store, not
through the lock's own code.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from recflow.core.artifacts import join, store_for
from recflow.core.config import Settings
from recflow.core.locks import LockTimeout, create_if_absent, lease

pytestmark = pytest.mark.integration


def _uri(settings: Settings, what: str) -> str:
    return join(settings.artifacts_uri, "test-locks", f"{what}-{uuid.uuid4().hex[:8]}")


def check_a_held_lock_refuses_in_time_naming_its_holder(settings: Settings) -> None:
    uri = _uri(settings, "held")
    store = store_for(settings)
    with lease(settings, uri, "alice promoting"):
        document = json.loads(store.get_bytes(uri))
        assert document["owner"].startswith("alice promoting (") and document["expires_at"] > time.time()
        started = time.monotonic()
        with pytest.raises(LockTimeout, match=r"held by alice promoting \(.*lease until") as refused:
            lease(settings, uri, "bob", wait_seconds=0.5).__enter__()
        assert 0.5 <= time.monotonic() - started < 5
        assert refused.value.holder.token == document["token"]
    assert not store.exists(uri), "leaving the block releases the lock"
    with lease(settings, uri, "bob", wait_seconds=0.5):
        assert json.loads(store.get_bytes(uri))["owner"].startswith("bob (")


def check_a_crashed_holders_lease_runs_out(settings: Settings) -> None:
    """A holder that never releases (a crash) blocks for its lease, then one waiter takes the lock; the
    crashed holder's late release leaves the new holder's lock alone."""
    uri = _uri(settings, "crashed")
    store = store_for(settings)
    crashed = lease(settings, uri, "crashed", lease_seconds=1.0)
    crashed.__enter__()
    started = time.monotonic()
    with lease(settings, uri, "bob", wait_seconds=10) as held:
        waited = time.monotonic() - started
        assert 0.5 < waited < 8, waited
        assert json.loads(store.get_bytes(uri))["token"] == held.holder.token
        crashed.__exit__(None, None, None)
        assert json.loads(store.get_bytes(uri))["token"] == held.holder.token, (
            "a late release deletes nothing"
        )
    assert not store.exists(uri)


def check_holders_exclude_each_other(settings: Settings) -> None:
    """Threads add one to a counter in the store (read, pause, write) under the lock: no update is lost."""
    uri, counter = _uri(settings, "mutex"), _uri(settings, "counter")
    store = store_for(settings)
    store.put_bytes(b"0", counter)
    errors: list[BaseException] = []

    def add(times: int) -> None:
        try:
            for _ in range(times):
                with lease(
                    settings, uri, threading.current_thread().name, wait_seconds=60, poll_seconds=0.01
                ):
                    value = int(store.get_bytes(counter))
                    time.sleep(0.01)
                    store.put_bytes(str(value + 1).encode(), counter)
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(5,), name=f"adder-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert int(store.get_bytes(counter)) == 20


def check_create_if_absent_writes_once(settings: Settings) -> None:
    uri = _uri(settings, "once")
    assert create_if_absent(settings, uri, b"first")
    assert not create_if_absent(settings, uri, b"second")
    assert store_for(settings).get_bytes(uri) == b"first"


CHECKS = (
    check_a_held_lock_refuses_in_time_naming_its_holder,
    check_a_crashed_holders_lease_runs_out,
    check_holders_exclude_each_other,
    check_create_if_absent_writes_once,
)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_the_lock_on_a_local_artifact_root(settings: Settings, check: Callable[[Settings], None]) -> None:
    assert settings.artifacts_uri.startswith("file://")
    check(settings)
