with

source as (

    select * from {{ source('raw', 'users') }}

),

renamed as (

    select
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(country as {{ dbt.type_string() }}) as country,
        cast(age as {{ dbt.type_int() }}) as age,
        cast(gender as {{ dbt.type_string() }}) as gender,
        cast(occupation as {{ dbt.type_string() }}) as occupation

    from source

),

final as (

    select * from renamed

)

select * from final
