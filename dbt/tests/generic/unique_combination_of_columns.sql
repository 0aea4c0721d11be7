{#
    Fails for every combination of the given columns that occurs in more than one row:
    a composite primary key test that needs no package.
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{%- set columns = combination_of_columns | join(', ') %}

with

validation_errors as (

    select
        {{ columns }},
        count(*) as n_rows

    from {{ model }}
    group by {{ columns }}
    having count(*) > 1

)

select * from validation_errors

{% endtest %}
