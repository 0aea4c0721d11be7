with

source as (

    select * from {{ source('raw', 'events') }}

),

renamed as (

    select
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(pin_id as {{ dbt.type_string() }}) as pin_id,
        lower(trim(event_type)) as event_type,
        cast(event_ts as {{ type_timestamptz() }}) as event_ts,
        surface,
        cast(value as {{ type_double() }}) as value,
        cast(ds as date) as ds,
        _source_file as source_file,
        _loaded_at as loaded_at

    from source

),

final as (

    select * from renamed

)

select * from final
