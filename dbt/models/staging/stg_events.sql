with

source as (

    select * from {{ source('raw', 'events') }}

),

renamed as (

    select
        cast(event_id as varchar) as event_id,
        cast(user_id as varchar) as user_id,
        cast(pin_id as varchar) as pin_id,
        lower(trim(event_type)) as event_type,
        cast(event_ts as timestamptz) as event_ts,
        surface,
        cast(value as double) as value,
        cast(ds as date) as ds,
        _source_file as source_file,
        _loaded_at as loaded_at

    from source

),

deduplicated as (

    select * from renamed
    qualify row_number() over (
        partition by event_id
        order by loaded_at desc, source_file desc
    ) = 1

),

final as (

    select * from deduplicated

)

select * from final
