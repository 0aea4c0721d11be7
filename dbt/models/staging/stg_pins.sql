with

source as (

    select * from {{ source('raw', 'pins') }}

),

renamed as (

    select
        cast(pin_id as {{ dbt.type_string() }}) as pin_id,
        cast(board_id as {{ dbt.type_string() }}) as board_id,
        cast(title as {{ dbt.type_string() }}) as title,
        cast(topics as {{ type_string_array() }}) as topics

    from source

),

final as (

    select * from renamed

)

select * from final
