with

user_pin_engagement as (

    select * from {{ ref('int_user_pin_engagement') }}

),

ranked_pairs as (

    select
        user_id,
        pin_id,
        cast(weight as {{ type_double() }}) as weight,
        n_positive_events,
        last_positive_ts as event_ts,
        count(*) over (partition by user_id) as n_user_pairs,
        row_number() over (
            partition by user_id
            order by last_positive_ts desc, {{ pin_order('pin_id', 'desc') }}
        ) as recency_rank

    from user_pin_engagement

),

split_pairs as (

    select
        user_id,
        pin_id,
        weight,
        n_positive_events,
        event_ts,
        case
            when n_user_pairs >= 2 and recency_rank = 1 then 'holdout'
            else 'train'
        end as split

    from ranked_pairs

),

final as (

    select
        user_id,
        pin_id,
        weight,
        n_positive_events,
        event_ts,
        split,
        -- within the split: a train pair's history never holds the holdout pair
        {{ history_window('pin_id', 'user_id, split', 'event_ts', var('history_window')) }} as history,
        cast(
            row_number() over (partition by user_id, split order by event_ts, {{ pin_order('pin_id') }}) - 1
            as {{ dbt.type_bigint() }}
        ) as n_earlier,
        cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as dbt_invocation_id

    from split_pairs

)

select * from final
