"""Running recflow's own Airflow: its environment, processes, REST client, setup, the demo, the benchmark, clear and garbage collection.

Imports any part of recflow below the CLI and the Airflow glue.
"""
