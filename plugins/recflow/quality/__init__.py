"""Data-quality checks of recflow, run in the warehouse.

- the Great Expectations runner (``_gx``) that the audit of write-audit-publish
  (:mod:`recflow.ingest.audit`) uses to judge a day;
- :func:`check_training_marts`: Great Expectations on the dbt marts the model trains on.

Refusals raise subclasses of :class:`recflow.core.errors.DataVerdict`. Importing this
package does not import Great Expectations (that takes seconds); the checks do,
when they run. The marts' row invariants are dbt's (tests and unit tests beside the models);
this package keeps only what dbt cannot say. Imports recflow.core and recflow.warehouse.
"""

from recflow.quality.report import ExpectationFailure, QualityReport
from recflow.quality.training_marts import check_training_marts

__all__ = [
    "ExpectationFailure",
    "QualityReport",
    "check_training_marts",
]
