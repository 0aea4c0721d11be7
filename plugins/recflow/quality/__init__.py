"""Data-quality checks of recflow, run in the warehouse.

- :func:`audit_days`: the audit of write-audit-publish for staged days of events
  (row rules → ``quality.quarantine_events``; Great Expectations judges the day;
  accepted rows are published to ``raw.events``);
- :func:`check_training_marts`: Great Expectations on the dbt marts the model trains on.

Refusals raise subclasses of :class:`recflow.errors.DataVerdict`. Importing this
package does not import Great Expectations (that takes seconds); the checks do,
when they run.
"""

from recflow.quality.raw_events import AuditResult, audit_day, audit_days, stage_and_audit
from recflow.quality.report import ExpectationFailure, QualityReport
from recflow.quality.training_marts import check_training_marts

__all__ = [
    "AuditResult",
    "ExpectationFailure",
    "QualityReport",
    "audit_day",
    "audit_days",
    "check_training_marts",
    "stage_and_audit",
]
