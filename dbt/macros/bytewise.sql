{#
    A string expression that orders by code point, whatever the database's collation: the
    holdout tie-break (training_interactions) must pick the same pin on every warehouse.
    DuckDB and Spark (its default UTF8_BINARY collation) compare strings bytewise already;
    PostgreSQL follows the database's locale (en_US.UTF-8 puts 'a_b' before 'ab') unless told "C".
#}

{% macro bytewise(expression) %}
    {{ return(adapter.dispatch('bytewise', 'recflow')(expression)) }}
{% endmacro %}

{% macro default__bytewise(expression) %}
    {{ return(expression) }}
{% endmacro %}

{% macro postgres__bytewise(expression) %}
    {{ return(expression ~ ' collate "C"') }}
{% endmacro %}
