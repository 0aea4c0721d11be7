"""The dbt project runs unchanged on PostgreSQL and builds the same marts as on DuckDB.

The warehouse DAG's first steps (generate, land, audit) run as the integration tests run them,
on the embedded DuckDB warehouse; then what they published (the tables dbt's sources read,
dbt/models/staging/_sources.yml) is copied into a fresh PostgreSQL database, the publication
step of a server warehouse, and ``dbt build`` runs on each with the settings' target. Every
mart must have the same rows and the same content digest (recflow.warehouse.checksum) on both:
after a first build from two days, and after a third day is published and the incremental
marts are built again. The crafted edge cases of tests/integration/test_dbt_build.py go through
both engines too, and the digest itself is shown to see content, not the engine's types.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import yaml  # type: ignore[import-untyped]

from recflow.core.config import Settings, subprocess_env
from recflow.ingest.days import stage_and_audit
from recflow.producers.generate import GeneratorConfig, generate
from recflow.warehouse import ANALYTICS_SCHEMA
from recflow.warehouse.checksum import TableDigest, arrow_digest, table_digest

DBT_DIR = Path(__file__).resolve().parents[2] / "dbt"
CFG = GeneratorConfig(start=date(2026, 2, 1), days=3, users=60, pins=200, topics=6, seed=23)
DAYS = [CFG.start + timedelta(days=i) for i in range(CFG.days)]
MARTS = sorted(path.stem for path in (DBT_DIR / "models" / "marts").glob("*.sql"))

# raw tables are created in PostgreSQL with the type DuckDB gave each column
POSTGRES_TYPES = {
    "VARCHAR": "text",
    "VARCHAR[]": "text[]",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIMESTAMP": "timestamp",
    "DOUBLE": "double precision",
    "DATE": "date",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
}


def _duckdb(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The embedded warehouse file, read-only, through DuckDB's own DB-API connection."""
    return duckdb.connect(str(settings.duckdb_path), read_only=True)


def _source_tables() -> list[str]:
    """``schema.table`` of every table the dbt sources declare."""
    tables: list[str] = []
    for path in sorted((DBT_DIR / "models").rglob("*.yml")):
        for source in (yaml.safe_load(path.read_text()) or {}).get("sources", []):
            schema = source.get("schema", source["name"])
            tables.extend(f"{schema}.{table['name']}" for table in source.get("tables", []))
    return tables


def _dbt_build(settings: Settings) -> Path:
    """``dbt build`` on the settings' target, in a subprocess as a worker runs it; its target folder."""
    target_path = settings.home / f"dbt-target-{settings.dbt_target}"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")),
            "build",
            "--project-dir", str(DBT_DIR),
            "--profiles-dir", str(DBT_DIR),
            "--target", settings.dbt_target,
            "--target-path", str(target_path),
            "--log-path", str(settings.home / f"dbt-logs-{settings.dbt_target}"),
            "--quiet",
        ],
        env=subprocess_env(settings.dbt_env()),
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return target_path


def _copy_text(value: Any) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        items = (
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value
        )
        value = "{" + ",".join(items) + "}"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _publish_to_postgres(settings: Settings, pg_url: str, tables: Sequence[str]) -> None:
    """Replace each raw table's content in PostgreSQL with DuckDB's (created on first use)."""
    import psycopg2

    pg = psycopg2.connect(pg_url)
    try:
        with _duckdb(settings) as duck, pg, pg.cursor() as cur:
            for table in tables:
                schema, name = table.split(".")
                columns = duck.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = ? and table_name = ? order by ordinal_position",
                    [schema, name],
                ).fetchall()
                assert columns, f"{table} is not in the DuckDB warehouse"
                ddl = ", ".join(f'"{column}" {POSTGRES_TYPES[data_type]}' for column, data_type in columns)
                cur.execute(f"create schema if not exists {schema}")
                cur.execute(f"create table if not exists {table} ({ddl})")
                cur.execute(f"truncate {table}")
                rows = duck.sql(f"select * from {table}").to_arrow_table()
                buffer = io.StringIO()
                for row in zip(*(column.to_pylist() for column in rows.columns), strict=True):
                    buffer.write("\t".join(_copy_text(v) for v in row) + "\n")
                buffer.seek(0)
                cur.copy_expert(f"copy {table} from stdin", buffer)
    finally:
        pg.close()


def _digests(duck_settings: Settings, pg_url: str) -> tuple[dict[str, TableDigest], dict[str, TableDigest]]:
    import sqlalchemy

    with _duckdb(duck_settings) as duck:
        on_duckdb = {mart: table_digest(duck, f"{ANALYTICS_SCHEMA}.{mart}") for mart in MARTS}
        # the Arrow path gives the same digest as the DB-API one
        first = f"{ANALYTICS_SCHEMA}.{MARTS[0]}"
        assert arrow_digest(duck.sql(f"select * from {first}").to_arrow_table()) == on_duckdb[MARTS[0]]
    # the installed driver is psycopg2 (SQLAlchemy's default for postgresql:// may be psycopg 3)
    # another session time zone than DuckDB's UTC: the digest compares instants, not their display
    engine = sqlalchemy.create_engine(
        sqlalchemy.make_url(pg_url).set(drivername="postgresql+psycopg2"),
        connect_args={"options": "-c timezone=America/New_York"},
    )
    try:
        with engine.connect() as pg:
            on_postgres = {mart: table_digest(pg, f"{ANALYTICS_SCHEMA}.{mart}") for mart in MARTS}
    finally:
        engine.dispose()
    return on_duckdb, on_postgres


def _assert_same_marts(on_duckdb: Mapping[str, TableDigest], on_postgres: Mapping[str, TableDigest]) -> None:
    assert all(digest.rows > 0 for digest in on_duckdb.values()), on_duckdb
    differing = {
        mart: (on_duckdb[mart], on_postgres[mart]) for mart in MARTS if on_duckdb[mart] != on_postgres[mart]
    }
    assert not differing, f"marts differ between DuckDB and PostgreSQL (duckdb, postgres): {differing}"


def _build_both(duck: Settings, pg: Settings, pg_url: str) -> Path:
    """dbt on DuckDB, publication of the raw tables to PostgreSQL, dbt there; the marts compared."""
    _dbt_build(duck)
    _publish_to_postgres(duck, pg_url, _source_tables())
    pg_target = _dbt_build(pg)
    _assert_same_marts(*_digests(duck, pg_url))
    return pg_target


def _settings(home: Path, pg_url: str) -> tuple[Settings, Settings]:
    """The embedded warehouse's settings, and the same with the PostgreSQL warehouse and target."""
    duck = Settings.from_env({"RECFLOW_HOME": str(home)})
    pg = Settings.from_env(
        {"RECFLOW_HOME": str(home), "RECFLOW_WAREHOUSE_URL": pg_url, "RECFLOW_DBT_TARGET": "postgres"}
    )
    return duck, pg


def test_marts_are_the_same_on_duckdb_and_postgres(tmp_path: Path, pg_database: str) -> None:
    assert {"fct_engagements", "dim_users", "dim_pins", "training_interactions"} <= set(MARTS)
    assert {"raw.events", "raw.pins", "raw.users"} <= set(_source_tables())
    duck, pg = _settings(tmp_path / "home", pg_database)
    generate(duck.landing_dir, CFG)

    stage_and_audit(duck, DAYS[:2], run_id="first")
    _build_both(duck, pg, pg_database)
    with _duckdb(duck) as con:
        first = table_digest(con, f"{ANALYTICS_SCHEMA}.fct_engagements")

    # a new day is published: the incremental mart builds only that day, on both
    stage_and_audit(duck, DAYS[2:], run_id="second")
    pg_target = _build_both(duck, pg, pg_database)
    compiled = (pg_target / "compiled" / "recflow" / "models" / "marts" / "fct_engagements.sql").read_text()
    assert "days_to_build" in compiled, "fct_engagements was not built incrementally on PostgreSQL"
    with _duckdb(duck) as con:
        assert table_digest(con, f"{ANALYTICS_SCHEMA}.fct_engagements").rows > first.rows


def test_crafted_rules_build_the_same_marts_on_both(tmp_path: Path, pg_database: str) -> None:
    """The crafted warehouse of the dbt build test (a hide that removes the would-be holdout, the
    '9'/'10' tie, ' Save ', unknown users and pins, an empty topic list), plus text that COPY and
    arrays must escape: the same marts on both engines."""
    from tests.integration.test_dbt_build import RAW_SQL

    duck, pg = _settings(tmp_path / "home", pg_database)
    duck.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(duck.duckdb_path)) as con:
        con.execute(RAW_SQL)
        con.execute(
            "insert into raw.pins values "
            "('88', null, e'tab\\there, \"quoted\" \\\\ back', ['a,b', 'say \"hi\"', null, '{}', 'NULL'])"
        )
    _build_both(duck, pg, pg_database)


def test_digest_sees_content_not_engine(pg_database: str) -> None:
    """The same rows, written in another order, typed and displayed by each engine its own way
    (``id / 3.0`` is a double on DuckDB and a numeric on PostgreSQL, ``sum(id)`` a hugeint and a
    bigint, timestamps shown in another session time zone, a run-metadata column that differs):
    one digest. A changed value: another."""
    import psycopg2

    ddl = (
        "create schema s; create table s.t (id integer, label text, amount double precision, "
        "seen_at timestamptz, naive timestamp, day date, tags text[], ok boolean, _loaded_at timestamptz)"
    )
    derived = "create table s.t2 as select *, id / 3.0 as third, sum(id) over () as total from s.t"
    rows = [
        (1, "a\tb", 0.1, datetime(2024, 3, 10, 12, tzinfo=UTC), datetime(2024, 3, 10, 12), date(2024, 3, 10), ["x", None], True),
        (2, "", -0.0, datetime(2024, 3, 10, 23, 59, 59, 999999, tzinfo=UTC), None, None, [], False),
        (3, None, float("nan"), None, None, None, None, None),
        (3, None, float("nan"), None, None, None, None, None),
    ]  # fmt: skip
    with duckdb.connect() as duck:
        duck.execute(ddl)
        duck.executemany("insert into s.t values (?, ?, ?, ?, ?, ?, ?, ?, now())", rows)
        duck.execute(derived)
        on_duckdb = table_digest(duck, "s.t2")

    pg = psycopg2.connect(pg_database, options="-c timezone=Asia/Kolkata")
    try:
        with pg, pg.cursor() as cur:
            cur.execute(ddl)
            cur.executemany(
                "insert into s.t values (%s, %s, %s, %s, %s, %s, %s, %s, now() - interval '1 day')",
                rows[::-1],
            )
            cur.execute(derived)
        assert table_digest(pg, "s.t2") == on_duckdb
        assert on_duckdb.rows == len(rows)
        with pg, pg.cursor() as cur:
            cur.execute("update s.t2 set amount = 0.1000001 where id = 1")
        assert table_digest(pg, "s.t2") != on_duckdb
    finally:
        pg.close()
