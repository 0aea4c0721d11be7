with

events as (

    select * from {{ ref('stg_events') }}

),

event_type_weights as (

    select * from {{ ref('event_type_weights') }}

),

positive_events as (

    select
        events.user_id,
        events.pin_id,
        events.event_ts,
        event_type_weights.weight

    from events
    inner join event_type_weights
        on events.event_type = event_type_weights.event_type
    where event_type_weights.is_positive

),

hidden_pairs as (

    select distinct
        user_id,
        pin_id

    from events
    where event_type = 'hide'

),

positive_pairs as (

    select
        user_id,
        pin_id,
        sum(weight) as weight,
        count(*) as n_positive_events,
        min(event_ts) as first_positive_ts,
        max(event_ts) as last_positive_ts

    from positive_events
    group by user_id, pin_id

),

final as (

    select positive_pairs.*

    from positive_pairs
    left join hidden_pairs
        on
            positive_pairs.user_id = hidden_pairs.user_id
            and positive_pairs.pin_id = hidden_pairs.pin_id
    where hidden_pairs.user_id is null

)

select * from final
