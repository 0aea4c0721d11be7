"""What on-call reads: the runbooks, incidents (built, stored, listed). No Airflow import: classifying Airflow's own exceptions lives in recflow.airflow.

Imports recflow.core and the registry (the champion a failure leaves serving).
"""
