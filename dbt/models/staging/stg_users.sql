with

source as (

    select * from {{ source('raw', 'users') }}

),

renamed as (

    select
        cast(user_id as varchar) as user_id,
        cast(country as varchar) as country,
        cast(age as integer) as age,
        cast(gender as varchar) as gender,
        cast(occupation as varchar) as occupation

    from source

),

final as (

    select * from renamed

)

select * from final
