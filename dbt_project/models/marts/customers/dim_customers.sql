-- One row per resolved customer as of D: the published golden record (no clear personal
-- data: has_* flags instead), order state, RFM, value x potential quadrant (from
-- int_customers_quadrant_assigned, shared with the KPI quadrant segments), lifecycle, and
-- the churn / lifetime-value scores of the CLV model (NULL when not scored), and the
-- preferences of int_customers_preferred (channel, social platform, category, hour band).

with

customers_resolved as (
    select * from {{ ref('int_customers_resolved') }}
),

profiles_merged as (
    select * from {{ ref('int_customer_profiles_merged') }}
),

order_summaries as (
    select * from {{ ref('int_customers_order_summarised') }}
),

rfm_scores as (
    select * from {{ ref('int_customers_rfm_scored') }}
),

quadrants as (
    select * from {{ ref('int_customers_quadrant_assigned') }}
),

member_tiers as (
    select * from {{ ref('int_customers_member_tiered') }}
),

clv_scores as (
    select * from {{ ref('stg_clv__customer_scores') }}
),

preferences as (
    select * from {{ ref('int_customers_preferred') }}
),

customers as (
    select
        customer_id,
        min(first_seen_date) as first_seen_date,
        count(*) as source_record_count,
        count(case when record_type = 'account' then 1 end) as account_record_count
    from customers_resolved
    where customer_id is not null
    group by customer_id
),

joined as (
    select
        customers.customer_id,
        customers.first_seen_date,
        customers.source_record_count,
        customers.account_record_count,
        profiles_merged.customer_name is not null as has_name,
        profiles_merged.phone is not null as has_phone,
        profiles_merged.email is not null as has_email,
        profiles_merged.address is not null as has_address,
        profiles_merged.birth_date is not null as has_birth_date,
        profiles_merged.unionid is not null as has_wechat_unionid,
        profiles_merged.gender,
        year(profiles_merged.birth_date) as birth_year,
        profiles_merged.province,
        profiles_merged.city,
        member_tiers.member_tier,
        member_tiers.member_tier_rank,
        member_tiers.member_level_source,
        profiles_merged.marketing_consent,
        {{ to_business_date('profiles_merged.registered_at') }} as registered_date,
        coalesce(profiles_merged.profile_completeness, 0) as profile_completeness,
        order_summaries.first_order_date,
        order_summaries.last_order_date,
        coalesce(order_summaries.orders_lifetime, 0) as orders_lifetime,
        coalesce(order_summaries.orders_365d, 0) as orders_365d,
        coalesce(order_summaries.net_revenue_365d, 0) as net_revenue_365d,
        coalesce(order_summaries.net_revenue_lifetime, 0) as net_revenue_lifetime,
        order_summaries.recency_days,
        rfm_scores.r_score,
        rfm_scores.f_score,
        rfm_scores.m_score,
        rfm_scores.rfm_segment,
        quadrants.engagement_90d,
        coalesce(order_summaries.is_vip, false) as is_vip,
        coalesce(order_summaries.lifecycle_stage, 'prospect') as lifecycle_stage,
        quadrants.is_high_value,
        quadrants.is_high_potential,
        quadrants.quadrant,
        clv_scores.p_alive,
        clv_scores.expected_purchases_90d,
        clv_scores.clv_365d,
        clv_scores.is_stale as clv_is_stale,
        clv_scores.scored_as_of as clv_scored_as_of,
        preferences.preferred_order_channel,
        preferences.preferred_social_platform,
        preferences.preferred_product_category,
        preferences.preferred_hour_band,
        preferences.first_order_channel
    from customers
    left join profiles_merged on customers.customer_id = profiles_merged.customer_id
    left join order_summaries on customers.customer_id = order_summaries.customer_id
    left join rfm_scores on customers.customer_id = rfm_scores.customer_id
    left join quadrants on customers.customer_id = quadrants.customer_id
    left join member_tiers on customers.customer_id = member_tiers.customer_id
    left join clv_scores on customers.customer_id = clv_scores.customer_id
    left join preferences on customers.customer_id = preferences.customer_id
),

final as (
    select
        cast(customer_id as string) as customer_id,
        cast(first_seen_date as date) as first_seen_date,
        cast(source_record_count as integer) as source_record_count,
        cast(account_record_count as integer) as account_record_count,
        cast(has_name as boolean) as has_name,
        cast(has_phone as boolean) as has_phone,
        cast(has_email as boolean) as has_email,
        cast(has_address as boolean) as has_address,
        cast(has_birth_date as boolean) as has_birth_date,
        cast(has_wechat_unionid as boolean) as has_wechat_unionid,
        cast(gender as string) as gender,
        cast(birth_year as integer) as birth_year,
        cast(province as string) as province,
        cast(city as string) as city,
        cast(member_tier as string) as member_tier,
        cast(member_tier_rank as integer) as member_tier_rank,
        cast(member_level_source as string) as member_level_source,
        cast(marketing_consent as boolean) as marketing_consent,
        -- PIPL: only an explicit yes allows marketing contact (NULL = unknown = no)
        cast(coalesce(marketing_consent, false) as boolean) as is_marketing_contactable,
        cast(registered_date as date) as registered_date,
        cast(profile_completeness as double) as profile_completeness,
        cast(first_order_date as date) as first_order_date,
        cast(last_order_date as date) as last_order_date,
        cast(orders_lifetime as integer) as orders_lifetime,
        cast(orders_365d as integer) as orders_365d,
        cast(net_revenue_365d as decimal(18, 2)) as net_revenue_365d,
        cast(net_revenue_lifetime as decimal(18, 2)) as net_revenue_lifetime,
        cast(recency_days as integer) as recency_days,
        cast(r_score as integer) as r_score,
        cast(f_score as integer) as f_score,
        cast(m_score as integer) as m_score,
        cast(rfm_segment as string) as rfm_segment,
        cast(engagement_90d as integer) as engagement_90d,
        cast(is_high_value as boolean) as is_high_value,
        cast(is_high_potential as boolean) as is_high_potential,
        cast(quadrant as string) as quadrant,
        cast(lifecycle_stage as string) as lifecycle_stage,
        cast(is_vip as boolean) as is_vip,
        cast(p_alive as double) as p_alive,
        cast(expected_purchases_90d as double) as expected_purchases_90d,
        cast(clv_365d as decimal(18, 2)) as clv_365d,
        cast(clv_is_stale as boolean) as clv_is_stale,
        cast(clv_scored_as_of as date) as clv_scored_as_of,
        cast(preferred_order_channel as string) as preferred_order_channel,
        cast(preferred_social_platform as string) as preferred_social_platform,
        cast(preferred_product_category as string) as preferred_product_category,
        cast(preferred_hour_band as string) as preferred_hour_band,
        cast(first_order_channel as string) as first_order_channel,
        cast({{ as_of_date() }} as date) as as_of_date
    from joined
)

select * from final
