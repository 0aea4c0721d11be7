"""The warehouse tables write-audit-publish writes beside the staged day, and their creation.

``raw.events`` (all that dbt reads of the events), ``quality.quarantine_events`` (the rows that
broke a row rule, with the verdict of the audit that quarantined them) and
``quality.partition_audit`` (one record per audit of a day). Where the engine partitions tables
(Spark), ``raw.events`` is partitioned by ``ds`` and the quarantine by ``ds`` and ``verdict``: the
units the audit replaces.
"""

from __future__ import annotations

from recflow.ingest.claims import claims_ddl
from recflow.ingest.contract import EVENT_COLUMNS
from recflow.warehouse import QUALITY_SCHEMA, RAW_SCHEMA, STAGING_SCHEMA, Warehouse

EVENTS_TABLE = f"{RAW_SCHEMA}.events"
QUARANTINE_TABLE = f"{QUALITY_SCHEMA}.quarantine_events"
AUDIT_TABLE = f"{QUALITY_SCHEMA}.partition_audit"

QUARANTINE_TYPES: tuple[tuple[str, str], ...] = (
    ("ds", "date not null"),
    *((name, sql_type) for name, sql_type in EVENT_COLUMNS if not name.startswith("_") and name != "ds"),
    ("broken_rules", "varchar[] not null"),
    ("source_file", "varchar not null"),
    ("source_row", "bigint not null"),
    ("run_id", "varchar not null"),
    ("quarantined_at", "timestamptz not null"),
    ("verdict", "varchar not null"),
)
QUARANTINE_COLUMNS = (
    "ds, event_id, user_id, pin_id, event_type, event_ts, surface, value, broken_rules, source_file, "
    "source_row, run_id, quarantined_at, verdict"
)
"""``verdict`` is that of the audit that quarantined the row: ``published`` (the row is of the day's
publication: the day's other rows are in ``raw.events``) or ``refused`` (of the latest refusal of the
day since: evidence)."""

AUDIT_TYPES: tuple[tuple[str, str], ...] = (
    ("ds", "date not null"),
    ("run_id", "varchar not null"),
    ("audited_at", "timestamptz not null"),
    ("landed", "bigint not null"),
    ("accepted", "bigint not null"),
    ("quarantined", "bigint not null"),
    ("verdict", "varchar not null"),
    ("reason", "varchar not null"),
    ("max_quarantine_share", "double precision not null"),
    ("volume_min", "bigint"),
    ("volume_max", "bigint"),
)
AUDIT_COLUMNS = ", ".join(name for name, _ in AUDIT_TYPES)

VERDICTS = ("published", "refused")
"""The verdicts of an audit (``quality.partition_audit.verdict``, ``quarantine_events.verdict``)."""


def ensure_tables(con: Warehouse) -> None:
    for schema in (RAW_SCHEMA, QUALITY_SCHEMA, STAGING_SCHEMA):
        con.execute(f"create schema if not exists {schema}")
    dialect = con.dialect
    con.execute(dialect.create_table(EVENTS_TABLE, EVENT_COLUMNS, partitioned_by=("ds",)))
    con.execute(dialect.create_table(QUARANTINE_TABLE, QUARANTINE_TYPES, partitioned_by=("ds", "verdict")))
    con.execute(dialect.create_table(AUDIT_TABLE, AUDIT_TYPES))
    con.execute(claims_ddl(con))
    if "verdict" not in con.columns(QUARANTINE_TABLE):
        _add_verdict(con)
    for table in (EVENTS_TABLE, QUARANTINE_TABLE):  # a day is replaced and counted in each
        con.execute_all(con.dialect.day_index(table, "ds"))


def _add_verdict(con: Warehouse) -> None:
    """A quarantine written before rows had a verdict: each day's rows were those of its latest audit,
    so each row takes the verdict of its run's latest audit of the day."""
    with con.transaction():
        con.execute(f"alter table {QUARANTINE_TABLE} add column verdict varchar")
        con.execute(
            f"""
            update {QUARANTINE_TABLE} as q set verdict = coalesce((
                select a.verdict from {AUDIT_TABLE} a where a.ds = q.ds and a.run_id = q.run_id
                order by a.audited_at desc limit 1
            ), 'refused')
            """
        )
