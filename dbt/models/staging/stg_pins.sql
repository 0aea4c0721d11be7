with

source as (

    select * from {{ source('raw', 'pins') }}

),

renamed as (

    select
        cast(pin_id as varchar) as pin_id,
        cast(board_id as varchar) as board_id,
        cast(title as varchar) as title,
        cast(topics as varchar[]) as topics

    from source

),

final as (

    select * from renamed

)

select * from final
