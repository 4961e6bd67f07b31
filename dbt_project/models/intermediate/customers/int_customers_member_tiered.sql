-- One row per customer with a membership level: the level of the surviving profile as
-- delivered (member_level_source) and its tier in one system (seed member_tiers). The CRM
-- writes 普通会员/银卡会员/金卡会员/钻石会员, the mini-program mall V1-V4; the
-- survivorship of int_customer_profiles_merged keeps whichever came last, so the marts
-- read the tier, never the mixed level. Matched without regard to case; a level the seed
-- does not know has no tier (dbt test on dim_customers, severity warn).

with

profiles_merged as (
    select * from {{ ref('int_customer_profiles_merged') }}
),

member_tiers as (
    select * from {{ ref('member_tiers') }}
),

tiered as (
    select
        profiles_merged.customer_id,
        profiles_merged.member_level as member_level_source,
        member_tiers.member_tier,
        member_tiers.member_tier_rank
    from profiles_merged
    left join member_tiers
        on lower(profiles_merged.member_level) = lower(member_tiers.source_value)
    where profiles_merged.member_level is not null
)

select * from tiered
