"""Data-quality suites of recflow, run through Great Expectations 1.x on the warehouse.

- :func:`check_raw_events`: the content of one landed partition of ``raw.events``
  (rows that fail are kept in ``quality.rejected_events``);
- :func:`check_training_marts`: the dbt marts the model trains on.

Both return a :class:`QualityReport` when every expectation holds, and raise
:class:`DataQualityError` (whose message is meant for the person on call) otherwise.
Importing this package does not import Great Expectations (that takes seconds); the
checks do, when they run.
"""

from recflow.quality.raw_events import check_raw_events
from recflow.quality.report import DataQualityError, ExpectationFailure, QualityReport
from recflow.quality.training_marts import check_training_marts

__all__ = [
    "DataQualityError",
    "ExpectationFailure",
    "QualityReport",
    "check_raw_events",
    "check_training_marts",
]
