{#
    The order of pins that tie on time, as an ORDER BY list: by length, then by code point
    (`bytewise`), so digit-only ids (MovieLens) follow numeric order ('9' before '10') and any
    other id a fixed order whatever the collation. The one rule for "later" among ties: the
    holdout split (`direction='desc'`: the latest is the last in this order), the training
    histories and `n_earlier` use it; the training job orders a user's examples, and the publish
    step the served histories, by the same rule (`recflow_ml.rows.pin_order`).
#}

{% macro pin_order(pin, direction='') %}
    {{- dbt.length(pin) }} {{ direction }}, {{ bytewise(pin) }} {{ direction -}}
{% endmacro %}
