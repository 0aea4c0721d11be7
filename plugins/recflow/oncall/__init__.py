"""What on-call reads: the runbooks, and incidents (the record, building one from a failed task, the store).

No Airflow import: the kinds of Airflow's own errors are given by recflow.airflow.classify,
which the failure callback passes in. Imports recflow.core and the registry (the champion a failure
leaves serving).
"""
