{#
    The values of `item` on the `size` rows just before this one in its partition, oldest first,
    ordered by `time` then `pin_order(item)` (the order the trainer sorts a user's pairs in): a
    list of strings, empty (never null) for the partition's first row.

    Engines differ in how a window collects a list. DuckDB's `list` and PostgreSQL's `array_agg`
    add the frame's rows in the window's order. Spark does not promise an order for
    `collect_list`, so its variant collects (time, length, item) triples and sorts them (Spark
    compares strings by code point) before it keeps the items.
#}

{% macro history_window(item, partition_by, time, size) %}
    {{ return(adapter.dispatch('history_window', 'recflow')(item, partition_by, time, size)) }}
{% endmacro %}

{% macro default__history_window(item, partition_by, time, size) %}
    {{ exceptions.raise_compiler_error(
        "no history window for the " ~ adapter.type() ~ " adapter: add "
        ~ adapter.type() ~ "__history_window to dbt/macros/history_window.sql"
    ) }}
{% endmacro %}

{% macro duckdb__history_window(item, partition_by, time, size) %}
    coalesce(
        list({{ item }}) over (
            partition by {{ partition_by }}
            order by {{ time }}, {{ pin_order(item) }}
            rows between {{ size }} preceding and 1 preceding
        ),
        cast([] as {{ type_string_array() }})
    )
{% endmacro %}

{% macro postgres__history_window(item, partition_by, time, size) %}
    coalesce(
        array_agg({{ item }}) over (
            partition by {{ partition_by }}
            order by {{ time }}, {{ pin_order(item) }}
            rows between {{ size }} preceding and 1 preceding
        ),
        cast('{}' as {{ type_string_array() }})
    )
{% endmacro %}

{% macro spark__history_window(item, partition_by, time, size) %}
    transform(
        array_sort(
            collect_list(struct({{ time }} as t, {{ dbt.length(item) }} as n, {{ item }} as item)) over (
                partition by {{ partition_by }}
                order by {{ time }}, {{ pin_order(item) }}
                rows between {{ size }} preceding and 1 preceding
            )
        ),
        x -> x.item
    )
{% endmacro %}
