{#
    How an incremental model replaces whole days (the `ds` of its rows): the engines differ.

    DuckDB and PostgreSQL delete the days the run selects and insert them again (`delete+insert`
    on `unique_key='ds'`). Spark's Parquet tables have no DELETE (dbt-spark's `merge` needs
    Delta, Iceberg or Hudi): the table is partitioned by `ds` and the run overwrites exactly the
    partitions its select returns (`insert_overwrite`, dynamic partition overwrite). The table
    format is the setting RECFLOW_SPARK_TABLE_FORMAT (`parquet`; `iceberg` or `delta` where the
    cluster has their jars).
#}

{% macro incremental_by_day() %}
    {{ return(adapter.dispatch('incremental_by_day', 'recflow')()) }}
{% endmacro %}

{% macro default__incremental_by_day() %}
    {{ return({'incremental_strategy': 'delete+insert', 'unique_key': 'ds'}) }}
{% endmacro %}

{% macro spark__incremental_by_day() %}
    {{ return({
        'incremental_strategy': 'insert_overwrite',
        'partition_by': ['ds'],
        'file_format': env_var('RECFLOW_SPARK_TABLE_FORMAT', 'parquet'),
    }) }}
{% endmacro %}
