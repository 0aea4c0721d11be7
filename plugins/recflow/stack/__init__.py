"""Running recflow's own Airflow, and what the CLI does with it.

- ``runtime``: Airflow's environment (the variables every Airflow process and task gets);
- ``services``: Airflow's processes (start, stop, ports, ``airflow ARGS``);
- ``api``: the client of Airflow's REST API;
- ``demo``: setup and the demo (the whole pipeline through the scheduler);
- ``benchmark``: the pipeline on MovieLens 100K;
- ``rerun``: ``recflow clear``, days run again from a task;
- ``retention``: ``recflow gc``, what may be deleted.

Imports any part of recflow below the CLI and the Airflow glue.
"""
