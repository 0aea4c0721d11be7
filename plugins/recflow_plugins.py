"""recflow's Airflow plugin: the API server refuses a trigger's conf keys that are not params."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from recflow.airflow.params import StrictConfMiddleware


class RecflowPlugin(AirflowPlugin):
    name = "recflow"
    fastapi_root_middlewares = [  # noqa: RUF012 (Airflow's attribute)
        {"name": "recflow_strict_params", "middleware": StrictConfMiddleware, "args": [], "kwargs": {}}
    ]
