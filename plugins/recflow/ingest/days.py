"""The multi-day loop of write-audit-publish: audit several days (a reload), or land and audit them."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from recflow.core.config import Settings
from recflow.core.errors import PartitionRefused
from recflow.ingest.audit import audit_day
from recflow.ingest.land import stage_partitions
from recflow.ingest.publish import AuditResult

log = logging.getLogger(__name__)


def audit_days(
    settings: Settings,
    days: Sequence[dt.date],
    *,
    run_id: str,
    max_quarantine_share: float | None = None,
    check_volume: bool = True,
) -> list[AuditResult]:
    """Audit and publish several days (a reload): every day is judged; refused days are raised together."""
    results: list[AuditResult] = []
    refused: list[PartitionRefused] = []
    for i, ds in enumerate(days, start=1):
        start = dt.datetime(ds.year, ds.month, ds.day, tzinfo=dt.UTC)
        try:
            results.append(
                audit_day(
                    settings,
                    ds,
                    start,
                    start + dt.timedelta(days=1),
                    run_id=run_id,
                    max_quarantine_share=max_quarantine_share,
                    check_volume=check_volume,
                )
            )
        except PartitionRefused as exc:
            refused.append(exc)
        log.info("[%d/%d] ds=%s audited", i, len(days), ds)
    if len(refused) == 1:
        raise refused[0]
    if refused:
        first = refused[0]
        raise PartitionRefused(
            f"{len(refused)} of {len(days)} days refused (the others were published):\n"
            + "\n".join(str(e) for e in refused),
            check=first.check,
            columns=sorted({c for e in refused for c in e.columns}),
            observed="; ".join(e.observed for e in refused),
            expected=first.expected,
            evidence="; ".join(e.evidence for e in refused),
            # the least share accepting every refused day, for the runbook's command over the range
            share_needed=max((e.share_needed for e in refused if e.share_needed is not None), default=None),
        )
    return results


def stage_and_audit(
    settings: Settings,
    days: Sequence[dt.date],
    *,
    run_id: str,
    max_quarantine_share: float | None = None,
    check_volume: bool = True,
) -> list[AuditResult]:
    """``land`` then ``audit`` for ``days``, in one call: the warehouse DAG's first two steps, bare."""
    stage_partitions(settings, list(days), run_id=run_id)
    return audit_days(
        settings,
        days,
        run_id=run_id,
        max_quarantine_share=max_quarantine_share,
        check_volume=check_volume,
    )
