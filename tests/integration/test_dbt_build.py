"""`dbt build` of the recflow project on a tiny crafted warehouse.

The raw rows are chosen so that each rule of the marts is visible in the result:
a hide that removes a pair (even one that would have been the holdout), a user
with a single positive pair, two positives at the same instant on pins '9' and
'10' (the tie-break must be numeric), an event type in
mixed case with spaces, a user and a pin seen in the events but absent from
the catalogues, and catalogue rows without any event.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from recflow.core.config import Settings

duckdb = pytest.importorskip("duckdb")
dbt_main = pytest.importorskip("dbt.cli.main")

pytestmark = pytest.mark.integration

DBT_DIR = Path(__file__).resolve().parents[2] / "dbt"

RAW_SQL = """
create schema raw;

create table raw.users (
    user_id varchar, country varchar, age integer, gender varchar, occupation varchar
);
insert into raw.users values
    ('u1', 'FR', 31, 'F', 'engineer'),
    ('u2', 'US', 45, 'M', 'artist'),
    ('u3', 'DE', 22, 'F', 'student'),
    ('u5', 'JP', 60, 'M', 'retired');

create table raw.pins (pin_id varchar, board_id varchar, title varchar, topics varchar[]);
insert into raw.pins values
    ('1', 'b1', 'Toy Story', ['Animation', 'Comedy']),
    ('2', 'b1', 'Jumanji', ['Adventure']),
    ('9', 'b2', 'Sudden Death', ['Action']),
    ('10', 'b2', 'GoldenEye', ['Action', 'Thriller']),
    ('77', 'b3', 'Never engaged', []);

create table raw.events (
    event_id varchar,
    user_id varchar,
    pin_id varchar,
    event_type varchar,
    event_ts timestamptz,
    surface varchar,
    value double,
    ds date,
    _source_file varchar,
    _loaded_at timestamp
);
insert into raw.events
select
    event_id,
    user_id,
    pin_id,
    event_type,
    cast(event_ts || '+00' as timestamptz),
    surface,
    value,
    cast(left(event_ts, 10) as date),
    'ds=' || left(event_ts, 10) || '/part-' || replace(right(loaded_at, 5), ':', '') || '.parquet',
    cast(loaded_at as timestamp)
from (values
    ('e01', 'u1', '1', 'impression', '2024-01-01 10:00', 'home_feed', null, '2024-01-02 00:10'),
    ('e02', 'u1', '1', 'click', '2024-01-01 10:01', 'home_feed', null, '2024-01-02 00:10'),
    ('e03', 'u1', '1', 'save', '2024-01-01 10:02', 'home_feed', 5.0, '2024-01-02 00:10'),
    ('e04', 'u1', '2', 'closeup', '2024-01-01 11:00', 'search', null, '2024-01-02 00:10'),
    ('e05', 'u1', '2', 'hide', '2024-01-01 11:05', 'search', null, '2024-01-02 00:10'),
    ('e06', 'u1', '9', 'click', '2024-01-02 09:00', 'related', null, '2024-01-03 00:10'),
    ('e07', 'u1', '10', 'click', '2024-01-02 09:00', 'related', null, '2024-01-03 00:10'),
    ('e08', 'u2', '1', 'save', '2024-01-01 12:00', 'board', null, '2024-01-02 00:10'),
    ('e09', 'u2', '9', 'impression', '2024-01-02 12:00', 'home_feed', null, '2024-01-03 00:10'),
    ('e10', 'u3', '9', 'hide', '2024-01-01 08:00', 'home_feed', null, '2024-01-02 00:10'),
    ('e11', 'u3', '9', 'save', '2024-01-02 10:00', 'home_feed', null, '2024-01-03 00:10'),
    ('e12', 'u3', '2', 'click', '2024-01-01 13:00', 'search', null, '2024-01-02 00:10'),
    ('e13', 'u3', '10', 'closeup', '2024-01-02 08:00', null, null, '2024-01-03 00:10'),
    ('e14', 'u4', 'p_x', 'click', '2024-01-02 14:00', 'search', null, '2024-01-03 00:10'),
    ('e15', 'u4', '1', ' Save ', '2024-01-02 15:00', 'search', null, '2024-01-03 00:10')
) as landed (event_id, user_id, pin_id, event_type, event_ts, surface, value, loaded_at);
"""


def _dbt(warehouse: Path, workdir: Path, *args: str) -> Any:
    """``dbt <args>`` of the project on the DuckDB file ``warehouse``, in process; its result."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in Settings(warehouse_path=warehouse).dbt_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        return dbt_main.dbtRunner().invoke(
            [
                *args,
                "--project-dir", str(DBT_DIR),
                "--profiles-dir", str(DBT_DIR),
                "--target-path", str(workdir / "target"),
                "--log-path", str(workdir / "logs"),
                "--no-use-colors",
            ]
        )  # fmt: skip


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A DuckDB file with the crafted raw tables after a successful `dbt build` (run once), and
    the status of every node the build ran, by unique id."""
    tmp_path = tmp_path_factory.mktemp("dbt_build")
    warehouse = tmp_path / "recflow.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(RAW_SQL)

    result = _dbt(warehouse, tmp_path, "build")
    failed = [
        f"{r.node.unique_id}: {r.status} {r.message}"
        for r in (result.result or [])
        if str(r.status) not in ("success", "pass", "warn")
    ]
    assert result.success, f"dbt build failed: {result.exception or failed}"
    return warehouse, {r.node.unique_id: str(r.status) for r in result.result}


@pytest.fixture(scope="module")
def built_warehouse(build: tuple[Path, dict[str, str]]) -> Path:
    return build[0]


def _rows(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse)) as con:
        rows: list[tuple[Any, ...]] = con.execute(sql).fetchall()
    return rows


def test_training_interactions_split_and_weights(built_warehouse: Path) -> None:
    rows = _rows(
        built_warehouse,
        """
        select
            user_id, pin_id, weight, n_positive_events,
            strftime(event_ts at time zone 'UTC', '%Y-%m-%d %H:%M'), split
        from analytics.training_interactions
        order by user_id, pin_id
        """,
    )
    assert rows == [
        # u1: ('1') click + save; ('2') hidden; tie at 09:00 -> pin 10. (A repeated event_id
        # never reaches raw.events: the audit quarantines it, tests/integration/test_audit.py.)
        ("u1", "1", 6.0, 2, "2024-01-01 10:02", "train"),
        ("u1", "10", 2.0, 1, "2024-01-02 09:00", "holdout"),
        ("u1", "9", 2.0, 1, "2024-01-02 09:00", "train"),
        # u2: a single positive pair stays in train.
        ("u2", "1", 4.0, 1, "2024-01-01 12:00", "train"),
        # u3: the latest positive ('9') was hidden earlier, so '10' is the holdout.
        ("u3", "10", 1.0, 1, "2024-01-02 08:00", "holdout"),
        ("u3", "2", 2.0, 1, "2024-01-01 13:00", "train"),
        # u4: not in the user catalogue; ' Save ' is normalised to a save.
        ("u4", "1", 4.0, 1, "2024-01-02 15:00", "holdout"),
        ("u4", "p_x", 2.0, 1, "2024-01-02 14:00", "train"),
    ]
    (weight_type,) = _rows(
        built_warehouse,
        "select distinct typeof(weight) from analytics.training_interactions",
    )
    assert weight_type == ("DOUBLE",)


def test_each_pair_carries_the_pins_before_it_in_its_split(built_warehouse: Path) -> None:
    rows = _rows(
        built_warehouse,
        "select user_id, pin_id, split, history, n_earlier from analytics.training_interactions "
        "order by user_id, pin_id",
    )
    assert rows == [
        ("u1", "1", "train", [], 0),
        # the holdout '10' shares 09:00 with '9' and comes after it (pin_order: length first),
        # yet is no train pair's history: histories stay within their split
        ("u1", "10", "holdout", [], 0),
        ("u1", "9", "train", ["1"], 1),
        ("u2", "1", "train", [], 0),
        ("u3", "10", "holdout", [], 0),
        ("u3", "2", "train", [], 0),
        ("u4", "1", "holdout", [], 0),
        ("u4", "p_x", "train", [], 0),
    ]


def test_dim_users_covers_catalogue_and_events(built_warehouse: Path) -> None:
    rows = _rows(
        built_warehouse,
        """
        select user_id, country, age, first_event_ts is null, n_positive_pairs
        from analytics.dim_users
        order by user_id
        """,
    )
    assert rows == [
        ("u1", "FR", 31, False, 3),
        ("u2", "US", 45, False, 1),
        ("u3", "DE", 22, False, 2),
        ("u4", None, None, False, 2),
        ("u5", "JP", 60, True, 0),
    ]


def test_dim_pins_covers_catalogue_and_events(built_warehouse: Path) -> None:
    rows = _rows(
        built_warehouse,
        """
        select pin_id, title, topics, n_positive_users
        from analytics.dim_pins
        order by length(pin_id), pin_id
        """,
    )
    assert rows == [
        ("1", "Toy Story", ["Animation", "Comedy"], 3),
        ("2", "Jumanji", ["Adventure"], 1),
        ("9", "Sudden Death", ["Action"], 1),
        ("10", "GoldenEye", ["Action", "Thriller"], 2),
        ("77", "Never engaged", [], 0),
        ("p_x", None, None, 1),
    ]


def test_fct_engagements_has_one_weighted_row_per_event(built_warehouse: Path) -> None:
    rows = _rows(
        built_warehouse,
        """
        select event_type, count(*), min(weight), bool_and(is_positive)
        from analytics.fct_engagements
        group by event_type
        order by event_type
        """,
    )
    assert rows == [
        ("click", 5, 2.0, True),
        ("closeup", 2, 1.0, True),
        ("hide", 2, 0.0, False),
        ("impression", 2, 0.0, False),
        ("save", 4, 4.0, True),
    ]


def test_the_unit_tests_run_in_the_build_and_pass(build: tuple[Path, dict[str, str]]) -> None:
    _, statuses = build
    unit_tests = {node: status for node, status in statuses.items() if node.startswith("unit_test.")}
    assert unit_tests == {
        "unit_test.recflow.int_user_pin_engagement.engagement_weights_and_hides": "pass",
        "unit_test.recflow.training_interactions.leave_last_out_split": "pass",
    }


# -- the marts' invariants: a broken mart fails the dbt test that owns the invariant ---------------

TI = "analytics.training_interactions"
BREAKS_SQL = f"""
-- u1: a second holdout (its '9', at the time of its holdout '10'); u3: no holdout left
update {TI} set split = 'holdout' where user_id = 'u1' and pin_id = '9';
update {TI} set split = 'train' where user_id = 'u3';
-- u4: the holdout '1' moved before its train pair 'p_x' (14:00)
update {TI} set event_ts = '2024-01-02 13:00:00+00' where user_id = 'u4' and pin_id = '1';
-- ids missing from the dimensions
delete from analytics.dim_pins where pin_id = 'p_x';
delete from analytics.dim_users where user_id = 'u2';
-- a weight that is no positive, a missing weight, a split that is neither train nor holdout
update {TI} set weight = 0 where user_id = 'u1' and pin_id = '1';
update {TI} set weight = null where user_id = 'u3' and pin_id = '2';
update {TI} set split = 'test' where user_id = 'u2';
-- u2 hides its only positive pin after the mart was built
insert into raw.events (event_id, user_id, pin_id, event_type, event_ts, ds, _source_file, _loaded_at)
values ('e99', 'u2', '1', 'hide', '2024-01-02 16:00:00+00', '2024-01-02', 'ds=2024-01-02/part-x.parquet',
        '2024-01-03 00:10:00');
"""

# the test that must refuse each break, with what it stores of the offending rows
REFUSALS: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "assert_training_interactions_one_holdout_per_user": (
        "user_id, n_pairs, n_holdout",
        [("u1", 3, 2), ("u3", 2, 0)],
    ),
    "assert_training_interactions_holdout_is_latest": (
        "user_id, holdout_pin_id, train_pin_id",
        [("u4", "1", "p_x")],
    ),
    "assert_training_interactions_has_no_hidden_pair": ("user_id, pin_id", [("u2", "1")]),
    "relationships_training_interactions_pin_id__pin_id__ref_dim_pins_": ("*", [("p_x",)]),
    "relationships_training_interactions_user_id__user_id__ref_dim_users_": ("*", [("u2",)]),
    "positive_training_interactions_weight": ("*", [(0.0,)]),
    "not_null_training_interactions_weight": ("user_id, pin_id", [("u3", "2")]),
    "accepted_values_training_interactions_split__train__holdout": ("*", [("test", 1)]),
}


@pytest.fixture(scope="module")
def broken_marts(
    built_warehouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """A copy of the built warehouse with BREAKS_SQL applied, and the results, by test name, of
    `dbt test --store-failures` of training_interactions' tests (its unit tests aside)."""
    tmp_path = tmp_path_factory.mktemp("broken_marts")
    warehouse = tmp_path / "recflow.duckdb"
    with duckdb.connect(str(built_warehouse)) as con:
        con.execute("checkpoint")  # dbt's last writes may still be in the write-ahead log
    shutil.copyfile(built_warehouse, warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(BREAKS_SQL)
    result = _dbt(
        warehouse,
        tmp_path,
        "test",
        "--select", "training_interactions",
        "--exclude-resource-type", "unit_test",
        "--store-failures",
    )  # fmt: skip
    assert not result.success
    return warehouse, {r.node.name: r for r in result.result}


def test_each_break_fails_exactly_the_test_that_owns_it(broken_marts: tuple[Path, dict[str, Any]]) -> None:
    _, results = broken_marts
    failed = {name for name, r in results.items() if str(r.status) != "pass"}
    assert failed == set(REFUSALS)
    assert all(str(results[name].status) == "fail" for name in REFUSALS)


@pytest.mark.parametrize("test_name", sorted(REFUSALS))
def test_a_broken_mart_is_refused_with_its_offending_rows(
    broken_marts: tuple[Path, dict[str, Any]], test_name: str
) -> None:
    warehouse, results = broken_marts
    columns, expected = REFUSALS[test_name]
    result = results[test_name]
    assert result.failures == len(expected)
    assert sorted(_rows(warehouse, f"select {columns} from {result.node.relation_name}")) == expected
