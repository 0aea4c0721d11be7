with

events as (

    select * from {{ ref('stg_events') }}

),

event_type_weights as (

    select * from {{ ref('event_type_weights') }}

),

final as (

    select
        events.event_id,
        events.user_id,
        events.pin_id,
        events.event_type,
        events.event_ts,
        events.surface,
        events.value,
        event_type_weights.weight,
        event_type_weights.is_positive,
        events.ds

    from events
    left join event_type_weights
        on events.event_type = event_type_weights.event_type

)

select * from final
