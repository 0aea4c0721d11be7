{#
    Fails for every row whose column is zero or negative (a null is not_null's to refuse).
#}
{% test positive(model, column_name) %}

with

validation_errors as (

    select {{ column_name }}

    from {{ model }}
    where {{ column_name }} <= 0

)

select * from validation_errors

{% endtest %}
