-- Every user with at least 2 positive pairs has exactly one holdout pair; a user with one has none.

with

training_interactions as (

    select * from {{ ref('training_interactions') }}

),

per_user as (

    select
        user_id,
        count(*) as n_pairs,
        count(case when split = 'holdout' then 1 end) as n_holdout

    from training_interactions
    group by user_id

),

final as (

    select *
    from per_user
    where n_holdout != (case when n_pairs >= 2 then 1 else 0 end)

)

select * from final
