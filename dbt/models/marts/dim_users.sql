with

users as (

    select * from {{ ref('stg_users') }}

),

events as (

    select * from {{ ref('stg_events') }}

),

user_pin_engagement as (

    select * from {{ ref('int_user_pin_engagement') }}

),

all_user_ids as (

    select user_id from users
    union
    select user_id from events

),

event_activity as (

    select
        user_id,
        min(event_ts) as first_event_ts,
        max(event_ts) as last_event_ts

    from events
    group by user_id

),

positive_pairs as (

    select
        user_id,
        count(*) as n_positive_pairs

    from user_pin_engagement
    group by user_id

),

final as (

    select
        all_user_ids.user_id,
        users.country,
        users.age,
        users.gender,
        users.occupation,
        event_activity.first_event_ts,
        event_activity.last_event_ts,
        coalesce(positive_pairs.n_positive_pairs, 0) as n_positive_pairs

    from all_user_ids
    left join users
        on all_user_ids.user_id = users.user_id
    left join event_activity
        on all_user_ids.user_id = event_activity.user_id
    left join positive_pairs
        on all_user_ids.user_id = positive_pairs.user_id

)

select * from final
