"""The only part of recflow that imports Airflow: task callables, assets, the dbt task group.

Everything here is thin: it turns the Airflow context (data interval, run ids,
params) into arguments for the plain-Python modules of ``recflow`` and their
results into small XCom values (URIs, ids, metrics), never data. It may import every other
part of recflow; nothing of recflow imports it (import-linter's contracts in pyproject.toml).
"""
