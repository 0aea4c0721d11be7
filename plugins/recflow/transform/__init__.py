"""The dbt project, built once per run and reported node by node.

``nodes``: which Airflow task reports which dbt nodes (read from the compiled manifest, no dbt
import). ``build``: one ``dbt build`` of the project, each node's result handed over as it ends,
and the verdict of a task on its nodes' results.
"""

from recflow.transform.build import BuildOutcome, NodeResult, TaskVerdict, run_build, verdict
from recflow.transform.nodes import NodeTask, node_tasks

__all__ = ["BuildOutcome", "NodeResult", "NodeTask", "TaskVerdict", "node_tasks", "run_build", "verdict"]
