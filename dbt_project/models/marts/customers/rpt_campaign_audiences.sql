-- Campaign audiences as of D: one row per (audience, customer). Only customers who gave
-- explicit marketing consent (dim_customers.is_marketing_contactable) are ever listed:
-- unknown or refused consent keeps a customer out of every audience (PIPL).
--
-- Audiences (docs/warehouse.md, "Campaign audiences"):
--   winback_dormant      lifecycle_stage = dormant (last order 180-364 days before D)
--   second_purchase_new  lifecycle_stage = new with exactly one order so far
--   vip_care             is_vip
--   nurture_high_potential  quadrant = low_value_high_potential
--   winback_dormant_social  lifecycle_stage = dormant with a preferred social platform (to
--                        reach on the platform the customer answers on)
-- Each row carries the customer's preferences (dim_customers: preferred channel, social
-- platform, product category, hour band), to split or filter any audience by them.

with

customers as (
    select * from {{ ref('dim_customers') }}
),

contactable as (
    select * from customers
    where is_marketing_contactable
),

memberships as (
    select
        'winback_dormant' as audience,
        customer_id
    from contactable
    where lifecycle_stage = 'dormant'
    union all
    select
        'second_purchase_new' as audience,
        customer_id
    from contactable
    where lifecycle_stage = 'new' and orders_lifetime = 1
    union all
    select
        'vip_care' as audience,
        customer_id
    from contactable
    where is_vip
    union all
    select
        'nurture_high_potential' as audience,
        customer_id
    from contactable
    where quadrant = 'low_value_high_potential'
    union all
    select
        'winback_dormant_social' as audience,
        customer_id
    from contactable
    where lifecycle_stage = 'dormant' and preferred_social_platform is not null
),

final as (
    select
        cast({{ hash_key("memberships.audience || '|' || memberships.customer_id") }} as string)
            as audience_member_id,
        cast(memberships.audience as string) as audience,
        cast(memberships.customer_id as string) as customer_id,
        cast(customers.lifecycle_stage as string) as lifecycle_stage,
        cast(customers.rfm_segment as string) as rfm_segment,
        cast(customers.quadrant as string) as quadrant,
        cast(customers.is_vip as boolean) as is_vip,
        cast(customers.clv_365d as decimal(18, 2)) as clv_365d,
        cast(customers.preferred_order_channel as string) as preferred_order_channel,
        cast(customers.preferred_social_platform as string) as preferred_social_platform,
        cast(customers.preferred_product_category as string) as preferred_product_category,
        cast(customers.preferred_hour_band as string) as preferred_hour_band,
        cast({{ as_of_date() }} as date) as as_of_date
    from memberships
    inner join customers
        on memberships.customer_id = customers.customer_id
)

select * from final
