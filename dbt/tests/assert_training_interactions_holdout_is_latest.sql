-- No user's holdout pair is earlier than any of that user's train pairs.

with

training_interactions as (

    select * from {{ ref('training_interactions') }}

),

holdout_pairs as (

    select * from training_interactions
    where split = 'holdout'

),

train_pairs as (

    select * from training_interactions
    where split = 'train'

),

final as (

    select
        holdout_pairs.user_id,
        holdout_pairs.pin_id as holdout_pin_id,
        holdout_pairs.event_ts as holdout_ts,
        train_pairs.pin_id as train_pin_id,
        train_pairs.event_ts as train_ts

    from holdout_pairs
    inner join train_pairs
        on
            holdout_pairs.user_id = train_pairs.user_id
            and train_pairs.event_ts > holdout_pairs.event_ts

)

select * from final
