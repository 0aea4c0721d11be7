{#
    Types that dbt's cross-database macros do not cover, one dispatched macro each.

    dbt.type_float() is not used for doubles: it renders `float`, a 4-byte REAL on DuckDB.
    dbt has no time-zone-aware timestamp and no array macro. A warehouse other than DuckDB,
    PostgreSQL and Spark adds its `<adapter>__` implementation here (docs/warehouses.md).
#}

{% macro type_double() %}
    {{ return(adapter.dispatch('type_double', 'recflow')()) }}
{% endmacro %}

{% macro default__type_double() %}
    {{ return('double precision') }}
{% endmacro %}

{% macro duckdb__type_double() %}
    {{ return('double') }}
{% endmacro %}

{% macro spark__type_double() %}
    {{ return('double') }}
{% endmacro %}


{% macro type_timestamptz() %}
    {{ return(adapter.dispatch('type_timestamptz', 'recflow')()) }}
{% endmacro %}

{% macro default__type_timestamptz() %}
    {{ return('timestamp with time zone') }}
{% endmacro %}

{% macro duckdb__type_timestamptz() %}
    {{ return('timestamptz') }}
{% endmacro %}

{% macro postgres__type_timestamptz() %}
    {{ return('timestamptz') }}
{% endmacro %}

{#- Spark's timestamp is an instant (shown in the session's time zone, UTC here): what timestamptz is elsewhere. -#}
{% macro spark__type_timestamptz() %}
    {{ return('timestamp') }}
{% endmacro %}


{#- A list of strings, in its order (the pin's topics). There is no portable spelling. -#}
{% macro type_string_array() %}
    {{ return(adapter.dispatch('type_string_array', 'recflow')()) }}
{% endmacro %}

{% macro default__type_string_array() %}
    {{ exceptions.raise_compiler_error(
        "no string array type for the " ~ adapter.type() ~ " adapter: add "
        ~ adapter.type() ~ "__type_string_array to dbt/macros/portable_types.sql"
    ) }}
{% endmacro %}

{% macro duckdb__type_string_array() %}
    {{ return('varchar[]') }}
{% endmacro %}

{% macro postgres__type_string_array() %}
    {{ return('text[]') }}
{% endmacro %}

{% macro spark__type_string_array() %}
    {{ return('array<string>') }}
{% endmacro %}
