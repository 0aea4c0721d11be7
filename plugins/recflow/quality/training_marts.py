"""The ``training_marts`` suite: what the dbt tests cannot say about the marts the model trains on.

dbt owns the marts' invariants, each tested once beside its model in ``dbt/`` and run by the
model's own ``transform.*`` task (``recflow.transform``) or by a task of its own for a
test over several models, all upstream of ``check_marts``:

- ``training_interactions``: ``user_id``, ``pin_id``, ``weight``, ``split`` not null, ``split``
  in (train, holdout), ``weight`` > 0, one row per (user_id, pin_id), every ``user_id`` in
  ``dim_users`` and every ``pin_id`` in ``dim_pins`` (``training_interactions.yml``); exactly
  one holdout for a user with 2 or more pairs and none otherwise, the holdout not earlier than
  the user's train pairs, no hidden pair (``dbt/tests/assert_training_interactions_*.sql``);
- the split and the engagement aggregation are also *unit* tested on fixed rows (``unit_tests``
  in ``training_interactions.yml`` and ``int_user_pin_engagement.yml``).

A mart that breaks one of them fails that dbt task (``DbtNodeFailed``, an incident of
kind ``transform`` naming the failing test): ``check_marts`` is then ``upstream_failed`` and
the asset that schedules training is not updated.

What stays here is what a dbt test does not say: a dbt test is a property of every correct
build, whatever its input, and an empty input correctly builds an empty mart, on which every
such test passes. Whether the mart *as it stands* is fit to train on is the trainer's
judgement over the whole mart, its volume: ``not_empty``, at least one row to train on.
(Checks of that kind, a distribution or a volume compared with earlier marts, belong here too.)
Its failure raises :class:`~recflow.core.errors.DataQualityError`, a data verdict that
on-call reads in ``recflow incidents show``; a missing mart table is one too.

The marts are derived data: nothing is kept aside when they fail; the fix is in dbt or
upstream of it.
"""

from __future__ import annotations

import logging
import time

from recflow.core.config import Settings
from recflow.quality._gx import Asset, import_gx, report_of, rule, run_suite
from recflow.quality.report import QualityReport, missing_tables_report, quality_error
from recflow.warehouse import ANALYTICS_SCHEMA, connect

log = logging.getLogger(__name__)

SUITE = "training_marts"
TRAINING_INTERACTIONS = f"{ANALYTICS_SCHEMA}.training_interactions"
MART_TABLES = ("training_interactions", "dim_users", "dim_pins")


def _assets() -> list[Asset]:
    from great_expectations.expectations.core.expect_table_row_count_to_be_between import (  # noqa: PLC0415 (GX takes seconds to import; DAG parse imports this module)
        ExpectTableRowCountToBeBetween,
    )

    interactions = Asset(
        name="training_interactions",
        query=f"select * from {TRAINING_INTERACTIONS}",
        expectations=[
            ExpectTableRowCountToBeBetween(
                min_value=1, **rule("not_empty", "there is something to train on")
            ),
        ],
    )
    return [interactions]


def check_training_marts(settings: Settings) -> QualityReport:
    """Check that the marts in ``analytics`` exist and that there is something to train on.

    Raise :class:`~recflow.core.errors.DataQualityError` otherwise.
    """
    started = time.monotonic()
    target = TRAINING_INTERACTIONS
    with connect(settings) as con:
        missing = [t for t in MART_TABLES if not con.table_exists(ANALYTICS_SCHEMA, t)]
        row = None if missing else con.execute(f"select count(*) from {TRAINING_INTERACTIONS}").fetchone()
        location = con.location
    if missing:
        raise quality_error(
            missing_tables_report(SUITE, target, [f"{ANALYTICS_SCHEMA}.{t}" for t in missing], location),
            evidence="the dbt build of recsys_warehouse has not built these tables",
        )
    rows = int(row[0]) if row else 0
    import_seconds = import_gx()
    assets = _assets()
    log.info(
        "suite %s: checking %d rows of %s, %d expectations",
        SUITE,
        rows,
        target,
        sum(len(a.expectations) for a in assets),
    )
    run = run_suite(settings, SUITE, assets)
    report = report_of(
        run,
        suite=SUITE,
        target=target,
        rows=rows,
        started=started,
        import_seconds=import_seconds,
    )
    if report.success:
        return report
    log.error("%s", report.summary())
    raise quality_error(
        report,
        evidence=f"select count(*) from {target}; the dbt models built it from raw.events (the published days)",
    )
