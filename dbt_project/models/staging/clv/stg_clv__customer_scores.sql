with

source as (
    select * from {{ source('clv', 'customer_scores') }}
),

renamed as (
    select
        cast(customer_id as string) as customer_id,
        cast(p_alive as double) as p_alive,
        cast(expected_purchases_90d as double) as expected_purchases_90d,
        cast(clv_365d as decimal(18, 2)) as clv_365d,
        coalesce(is_stale, false) as is_stale,
        cast(scored_as_of as date) as scored_as_of
    from source
)

select * from renamed
