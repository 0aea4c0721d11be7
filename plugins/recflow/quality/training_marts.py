"""The ``training_marts`` suite: the dbt marts the model trains on, checked before training.

``analytics.training_interactions`` has one row per positive user-pin pair with a
leave-one-out ``split``; ``analytics.dim_users`` and ``analytics.dim_pins`` are the
dimensions. The checks that span rows (one holdout per user, holdout not earlier than
the user's train pairs, every id present in its dimension) are computed by the assets'
queries (per-user aggregates, left joins), so each expectation is a plain column
expectation whose offending rows name the user_id or pin_id.

The marts are derived data: nothing is kept aside when they fail; the message names
the offending ids, and the fix is in dbt or upstream of it.
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
DIM_USERS = f"{ANALYTICS_SCHEMA}.dim_users"
DIM_PINS = f"{ANALYTICS_SCHEMA}.dim_pins"
SPLITS = ("train", "holdout")
MART_TABLES = ("training_interactions", "dim_users", "dim_pins")

_PER_USER = f"""
    select
        user_id,
        count(*) as n_pairs,
        count(*) filter (where split = 'holdout') as n_holdout,
        min(event_ts) filter (where split = 'holdout') as holdout_event_ts,
        max(event_ts) filter (where split = 'train') as latest_train_event_ts
    from {TRAINING_INTERACTIONS}
    where user_id is not null
    group by user_id
"""


def _assets() -> list[Asset]:
    from great_expectations.expectations.core.expect_column_pair_values_a_to_be_greater_than_b import (
        ExpectColumnPairValuesAToBeGreaterThanB,
    )
    from great_expectations.expectations.core.expect_column_values_to_be_between import (
        ExpectColumnValuesToBeBetween,
    )
    from great_expectations.expectations.core.expect_column_values_to_be_in_set import (
        ExpectColumnValuesToBeInSet,
    )
    from great_expectations.expectations.core.expect_column_values_to_be_null import (
        ExpectColumnValuesToBeNull,
    )
    from great_expectations.expectations.core.expect_column_values_to_not_be_null import (
        ExpectColumnValuesToNotBeNull,
    )
    from great_expectations.expectations.core.expect_table_row_count_to_be_between import (
        ExpectTableRowCountToBeBetween,
    )

    interactions = Asset(
        name="training_interactions",
        query=f"select * from {TRAINING_INTERACTIONS}",
        index_columns=("user_id", "pin_id"),
        expectations=[
            ExpectTableRowCountToBeBetween(
                min_value=1, **rule("not_empty", "there is something to train on")
            ),
            *(
                ExpectColumnValuesToNotBeNull(
                    column=column, **rule(f"not_null_{column}", f"{column} is required")
                )
                for column in ("user_id", "pin_id", "split", "weight")
            ),
            ExpectColumnValuesToBeInSet(
                column="split", value_set=list(SPLITS), **rule("split_known", "split is train or holdout")
            ),
            ExpectColumnValuesToBeBetween(
                column="weight",
                min_value=0,
                strict_min=True,
                **rule("weight_positive", "weight > 0: every pair is a positive"),
            ),
        ],
    )
    per_user = Asset(
        name="training_holdouts_per_user",
        query=_PER_USER,
        index_columns=("user_id",),
        noun="users",
        expectations=[
            ExpectColumnValuesToBeBetween(
                column="n_holdout",
                min_value=0,
                max_value=1,
                **rule("at_most_one_holdout", "at most one holdout pair per user"),
            ),
            ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="holdout_event_ts",
                column_B="latest_train_event_ts",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                **rule(
                    "holdout_is_latest",
                    "a user's holdout is not earlier than the user's latest train pair",
                ),
            ),
        ],
    )
    users_with_pairs = Asset(
        name="training_users_with_2_or_more_pairs",
        query=f"select user_id, n_pairs, n_holdout from ({_PER_USER}) as per_user where n_pairs >= 2",
        index_columns=("user_id", "n_pairs"),
        noun="users with >= 2 pairs",
        expectations=[
            ExpectColumnValuesToBeBetween(
                column="n_holdout",
                min_value=1,
                **rule("holdout_for_every_user", "every user with >= 2 positive pairs has a holdout pair"),
            ),
        ],
    )
    missing_users = Asset(
        name="training_user_ids_in_dim_users",
        query=f"""
            select distinct
                t.user_id,
                case when d.user_id is null then t.user_id end as user_id_missing_from_dim_users
            from {TRAINING_INTERACTIONS} as t
            left join {DIM_USERS} as d on t.user_id = d.user_id
            where t.user_id is not null
        """,
        index_columns=("user_id",),
        noun="distinct user_ids",
        expectations=[
            ExpectColumnValuesToBeNull(
                column="user_id_missing_from_dim_users",
                **rule("user_ids_in_dim_users", "every user_id of training_interactions is in dim_users"),
            ),
        ],
    )
    missing_pins = Asset(
        name="training_pin_ids_in_dim_pins",
        query=f"""
            select distinct
                t.pin_id,
                case when d.pin_id is null then t.pin_id end as pin_id_missing_from_dim_pins
            from {TRAINING_INTERACTIONS} as t
            left join {DIM_PINS} as d on t.pin_id = d.pin_id
            where t.pin_id is not null
        """,
        index_columns=("pin_id",),
        noun="distinct pin_ids",
        expectations=[
            ExpectColumnValuesToBeNull(
                column="pin_id_missing_from_dim_pins",
                **rule("pin_ids_in_dim_pins", "every pin_id of training_interactions is in dim_pins"),
            ),
        ],
    )
    return [interactions, per_user, users_with_pairs, missing_users, missing_pins]


def check_training_marts(settings: Settings) -> QualityReport:
    """Validate the training marts in ``analytics``; raise :class:`~recflow.core.errors.DataQualityError` on any breach."""
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
        "suite %s: checking %d rows of %s with %s and %s, %d expectations",
        SUITE,
        rows,
        target,
        DIM_USERS,
        DIM_PINS,
        sum(len(a.expectations) for a in assets),
    )
    run = run_suite(settings, SUITE, assets)
    report = report_of(
        run,
        suite=SUITE,
        target=f"{target} (+ {DIM_USERS}, {DIM_PINS})",
        rows=rows,
        started=started,
        import_seconds=import_seconds,
    )
    if report.success:
        return report
    log.error("%s", report.summary())
    raise quality_error(report, evidence=f"the offending ids above, in {target}, {DIM_USERS} and {DIM_PINS}")
