-- A user–pin pair the user ever hid is never a training positive.

with

training_interactions as (

    select * from {{ ref('training_interactions') }}

),

events as (

    select * from {{ ref('stg_events') }}

),

hides as (

    select distinct
        user_id,
        pin_id

    from events
    where event_type = 'hide'

),

final as (

    select training_interactions.*

    from training_interactions
    inner join hides
        on
            training_interactions.user_id = hides.user_id
            and training_interactions.pin_id = hides.pin_id

)

select * from final
