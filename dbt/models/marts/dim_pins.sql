with

pins as (

    select * from {{ ref('stg_pins') }}

),

events as (

    select * from {{ ref('stg_events') }}

),

user_pin_engagement as (

    select * from {{ ref('int_user_pin_engagement') }}

),

all_pin_ids as (

    select pin_id from pins
    union
    select pin_id from events

),

pin_popularity as (

    select
        pin_id,
        count(*) as n_positive_users

    from user_pin_engagement
    group by pin_id

),

final as (

    select
        all_pin_ids.pin_id,
        pins.board_id,
        pins.title,
        pins.topics,
        coalesce(pin_popularity.n_positive_users, 0) as n_positive_users

    from all_pin_ids
    left join pins
        on all_pin_ids.pin_id = pins.pin_id
    left join pin_popularity
        on all_pin_ids.pin_id = pin_popularity.pin_id

)

select * from final
