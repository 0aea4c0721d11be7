"""A client of the embedded Airflow's public REST API (``/api/v2``), and waiting on it.

Used by ``recflow clear``, ``recflow demo``, the benchmark and the end-to-end tests: the same
calls the UI makes, with a JWT from ``/auth/token``. The processes that serve it are
``recflow.stack.services``'s.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from recflow.core.config import Settings
from recflow.stack.runtime import ADMIN_USER, admin_password, api_base_url

log = logging.getLogger(__name__)

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


API_ATTEMPTS = 5
"""SQLite (the embedded metadata DB) allows one writer: a request that meets the scheduler's
write lock gets 503 ("Database is locked", e.g. creating a backfill) or a 500 "Database error";
those are retried with a growing pause, and only where a retry cannot do a thing twice."""


def _locked(method: str, status: int, detail: str) -> bool:
    if status == 503:  # Airflow's own answer when the write could not start: nothing happened
        return True
    return status == 500 and "Database error" in detail and method in {"GET", "PATCH", "PUT", "DELETE"}


RECENT_RUNS = 100
"""How many of a DAG's runs :meth:`AirflowClient.runs` returns, the most recent first; a run named by
its id is read with :meth:`AirflowClient.run`, which finds it however old."""

PAGE = 100
"""Items per request of a paged list: Airflow's ``[api] maximum_page_limit`` by default, which cuts a
larger ``limit`` to it without a word (and a list asked for with no limit gets 50)."""


EXCERPT_CHARS = 120
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def excerpt(body: str, limit: int = EXCERPT_CHARS) -> str:
    """A server's answer on one short line: an HTML page by its title (else its text without tags),
    anything else with its blanks and line breaks as single spaces, cut at ``limit`` characters."""
    if body.lstrip().startswith("<"):
        title = _TITLE.search(body)
        body = _TAG.sub(" ", title.group(1) if title else body)
    flat = " ".join(body.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


class AirflowApiError(RuntimeError):
    """A request the API server answered with an error (``status``: its HTTP status, if it answered)."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail

    @property
    def reason(self) -> str:
        """The server's own words: the ``detail`` of its JSON answer, else the answer as it came."""
        try:
            body = json.loads(self.detail)
        except ValueError:
            return self.detail or str(self)
        found = body.get("detail") if isinstance(body, dict) else None
        return found if isinstance(found, str) else self.detail


class NoAdminPassword(AirflowApiError):
    """This home's API server has not written the admin password (it has not started, or is starting)."""


@dataclass
class AirflowClient:
    """A small client of Airflow 3's public REST API (``/api/v2``) with a JWT from ``/auth/token``."""

    base_url: str
    token: str = ""
    retry_pause: float = 2.0
    """Seconds before the second try of a request that met the DB's write lock; grows by try."""

    @classmethod
    def login(cls, settings: Settings, base_url: str | None = None) -> AirflowClient:
        password = admin_password(settings)
        if password is None:
            raise NoAdminPassword("the API server has not written the admin password yet")
        client = cls(base_url or api_base_url(settings))
        body = client._request(
            "POST", "/auth/token", {"username": ADMIN_USER, "password": password}, auth=False
        )
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            shown = excerpt(json.dumps(body))
            raise AirflowApiError(f"POST /auth/token: HTTP 200 with no access_token: {shown}", status=200)
        client.token = token
        return client

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token}")
        for attempt in range(1, API_ATTEMPTS + 1):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, payload = response.status, response.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:500]
                if attempt < API_ATTEMPTS and _locked(method, exc.code, detail):
                    log.warning(
                        "%s %s: HTTP %s (metadata DB busy), try %d of %d",
                        method,
                        path,
                        exc.code,
                        attempt,
                        API_ATTEMPTS,
                    )
                    time.sleep(self.retry_pause * attempt)
                    continue
                raise AirflowApiError(
                    f"{method} {path}: HTTP {exc.code}: {excerpt(detail, 500)}",
                    status=exc.code,
                    detail=detail,
                ) from None
            try:
                return json.loads(payload) if payload else None
            except ValueError:  # a server that is not Airflow's (an HTML page)
                text = payload.decode(errors="replace")
                raise AirflowApiError(
                    f"{method} {path}: HTTP {status}, not JSON: {excerpt(text)}",
                    status=status,
                    detail=text[:500],
                ) from None
        raise AssertionError("unreachable")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._request("GET", f"/api/v2/dags/{dag_id}")
        except AirflowApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def backfill(
        self,
        dag_id: str,
        from_date: str,
        to_date: str,
        *,
        reprocess: str = "none",
        max_active_runs: int = 1,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST",
            "/api/v2/backfills",
            {
                "dag_id": dag_id,
                "from_date": from_date,
                "to_date": to_date,
                "max_active_runs": max_active_runs,
                "reprocess_behavior": reprocess,
            },
        )
        return result

    def backfills(self, dag_id: str) -> list[dict[str, Any]]:
        """Every backfill of the DAG, oldest first."""
        return self._every("/api/v2/backfills", "backfills", {"dag_id": dag_id, "order_by": "id"})

    def get_backfill(self, backfill_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v2/backfills/{backfill_id}")
        return result

    def cancel_backfill(self, backfill_id: int) -> None:
        self._request("PUT", f"/api/v2/backfills/{backfill_id}/cancel")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        return result

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        body = self._request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
            "/xcomEntries/return_value?deserialize=true",
        )
        return body.get("value")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[str]:
        """The events (messages) of one try's log, as the UI shows them; none when it has no log yet."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/logs/{try_number}?full_content=true"
        )
        try:
            body = self._request("GET", path)
        except AirflowApiError:
            return []
        content = (body or {}).get("content") or []
        return [str(item.get("event", "")) if isinstance(item, dict) else str(item) for item in content]

    def delete_run(self, dag_id: str, run_id: str) -> None:
        """Delete a run; an unfinished one is marked failed first (Airflow refuses to delete it running)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
        self._request("PATCH", path, {"state": "failed"})
        self._request("DELETE", path)

    def clear_run(self, dag_id: str, run_id: str) -> None:
        """Clear every task of a run (what "Clear" on a run does in the UI): the run goes again."""
        self._request(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/clear",
            {"dry_run": False, "only_failed": False},
        )

    def asset_events(self, source_dag_id: str, source_run_id: str) -> list[dict[str, Any]]:
        """The asset events a run emitted."""
        body = self._request(
            "GET",
            f"/api/v2/assets/events?source_dag_id={source_dag_id}&source_run_id={quote(source_run_id, safe='')}",
        )
        events: list[dict[str, Any]] = body["asset_events"]
        return events

    def run(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        """One run by its id, however old (None when the DAG has no such run)."""
        try:
            found: dict[str, Any] = self._request(
                "GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
            )
        except AirflowApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's :data:`RECENT_RUNS` most recent runs, the latest first."""
        body = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit={RECENT_RUNS}&order_by=-run_after")
        runs: list[dict[str, Any]] = body["dag_runs"]
        return runs

    def _every(self, path: str, key: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """Every item of a paged list, a page (:data:`PAGE`) per request, in the query's order."""
        items: list[dict[str, Any]] = []
        while True:
            body = self._request("GET", f"{path}?{urlencode({**query, 'limit': PAGE, 'offset': len(items)})}")
            page: list[dict[str, Any]] = body[key]
            items.extend(page)
            if not page or len(items) >= int(body["total_entries"]):
                return items

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (a run of a 30-day range maps land and audit 30 times each)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return self._every(path, "task_instances", {"order_by": "id"})

    def task_ids(self, dag_id: str) -> list[str]:
        """Every task id of the DAG's latest version."""
        body = self._request("GET", f"/api/v2/dags/{dag_id}/tasks")
        return [str(t["task_id"]) for t in body["tasks"]]

    def runs_where(self, dag_id: str, **query: str) -> list[dict[str, Any]]:
        """Every run of the DAG that the list's filters select (``logical_date_gte``, ``run_after_lt``,
        ``conf_contains``: Airflow's query parameters), oldest first."""
        return self._every(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs", {**query, "order_by": "id"})

    def clear_task_instances(
        self,
        dag_id: str,
        run_id: str,
        task_ids: list[str],
        *,
        downstream: bool,
        only_failed: bool,
        dry_run: bool,
    ) -> list[dict[str, Any]]:
        """Clear the given tasks of one run, as "Clear" on a task instance in the UI does (the run goes
        again from them); returns the task instances cleared (or that would be, with ``dry_run``)."""
        body = self._request(
            "POST",
            f"/api/v2/dags/{dag_id}/clearTaskInstances",
            {
                "dry_run": dry_run,
                "dag_run_id": run_id,
                "task_ids": task_ids,
                "include_downstream": downstream,
                "include_upstream": False,
                "only_failed": only_failed,
                "reset_dag_runs": True,
            },
        )
        instances: list[dict[str, Any]] = body["task_instances"]
        return instances

    def mark_task(self, dag_id: str, run_id: str, task_id: str, state: str) -> list[dict[str, Any]]:
        """Set one task instance's state (``failed``, ``success`` or ``skipped``) as "Mark as" in the UI
        does: that task only (Airflow's ``include_*`` default to false). Returns the instances changed."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        instances: list[dict[str, Any]] = self._request("PATCH", path, {"new_state": state})["task_instances"]
        return instances


def wait_for_dags(client: AirflowClient, dag_ids: list[str], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(client.dag(d) is not None for d in dag_ids):
            return
        time.sleep(2)
    raise TimeoutError(f"DAGs {dag_ids} were not parsed within {timeout:.0f}s: check the dag-processor log")
