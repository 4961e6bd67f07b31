{{ config(materialized='table') }}

-- Each resolved customer's preferences as of D (docs/warehouse.md, "Customer preferences"),
-- from every row up to D (not cancelled orders and their lines, inbound social interactions):
--   preferred_order_channel     the channel of most orders
--   preferred_social_platform   the platform of most inbound interactions (the customer's
--                               own messages, comments and responses; not the brand's pushes)
--   preferred_product_category  the category of most net revenue (lines of not cancelled orders)
--   preferred_hour_band         the business-time band of most orders: night [0, 6),
--                               morning [6, 12), afternoon [12, 18), evening [18, 24)
--   first_order_channel         the channel of the first order (earliest ordered_at, then order_id)
-- Ties go to the value of the latest row (order, interaction), then the smallest value.
-- A NULL channel or category is no preference; NULL when the customer has no such row.

with

orders as (
    select * from {{ ref('fct_orders') }}
    where customer_id is not null and not is_cancelled
),

order_lines as (
    select * from {{ ref('fct_order_lines') }}
    where customer_id is not null and not is_cancelled
),

interactions as (
    select * from {{ ref('fct_social_interactions') }}
    where customer_id is not null and is_inbound
),

order_hours as (
    select
        customer_id,
        ordered_at,
        case
            when hour(ordered_at_local) < 6 then 'night'
            when hour(ordered_at_local) < 12 then 'morning'
            when hour(ordered_at_local) < 18 then 'afternoon'
            else 'evening'
        end as hour_band
    from orders
    where ordered_at_local is not null
),

candidates as (
    select
        'order_channel' as preference,
        customer_id,
        channel as value,
        cast(count(*) as double) as weight,
        max(ordered_at) as latest_at
    from orders
    where channel is not null
    group by customer_id, channel
    union all
    select
        'social_platform' as preference,
        customer_id,
        platform as value,
        cast(count(*) as double) as weight,
        max(occurred_at) as latest_at
    from interactions
    where platform is not null
    group by customer_id, platform
    union all
    select
        'product_category' as preference,
        customer_id,
        product_category as value,
        cast(sum(net_revenue) as double) as weight,
        max(ordered_at) as latest_at
    from order_lines
    where product_category is not null
    group by customer_id, product_category
    union all
    select
        'hour_band' as preference,
        customer_id,
        hour_band as value,
        cast(count(*) as double) as weight,
        max(ordered_at) as latest_at
    from order_hours
    group by customer_id, hour_band
),

preferred as (
    select
        preference,
        customer_id,
        value
    from candidates
    qualify
        row_number() over (
            partition by preference, customer_id
            order by weight desc, latest_at desc, value asc
        ) = 1
),

first_orders as (
    select
        customer_id,
        channel as first_order_channel
    from orders
    qualify row_number() over (partition by customer_id order by ordered_at asc, order_id asc) = 1
),

customers as (
    select customer_id from preferred
    union
    select customer_id from first_orders
),

final as (
    select
        customers.customer_id,
        max(case when preferred.preference = 'order_channel' then preferred.value end)
            as preferred_order_channel,
        max(case when preferred.preference = 'social_platform' then preferred.value end)
            as preferred_social_platform,
        max(case when preferred.preference = 'product_category' then preferred.value end)
            as preferred_product_category,
        max(case when preferred.preference = 'hour_band' then preferred.value end)
            as preferred_hour_band,
        max(first_orders.first_order_channel) as first_order_channel
    from customers
    left join preferred
        on customers.customer_id = preferred.customer_id
    left join first_orders
        on customers.customer_id = first_orders.customer_id
    group by customers.customer_id
)

select * from final
