-- One row per campaign and segment: segment 'all', and one row per lifecycle stage of the
-- pushed customers as of the push (metrics.md lifecycle_stage: the stage the campaign found
-- them in, before its outcome). Only pushes to resolved customers count (as in
-- campaign_response_rate).
--   pushes, reached_customers: outbound campaign_pushes and the distinct customers they
--     reached (a customer's segment is the one as of her first push of the campaign);
--   responded_pushes: pushes followed within var campaign_response_days (7) by an inbound
--     interaction or an order of the customer (fct_social_interactions flag);
--   attributed_orders, attributed_net_revenue: last-touch attribution: a non-cancelled
--     order belongs to the latest push to its customer before it, if at most
--     var campaign_attribution_days (30) before it; an order belongs to one campaign at most;
--   converted_customers: reached customers who ordered within 30 days after their first push
--     of the campaign (whichever campaign an order is attributed to);
--   holdout_customers: the comparison group: resolved customers with a WeChat account seen
--     before the campaign's first push, in the same segment as of that day, whom the
--     campaign did not push; converted if they ordered within 30 days after that first push.
--     A fair hold-out where the campaign pushed its segment at random (a win-back push
--     keeps a random share of the dormant customers back; a news or promotion push reaches
--     a random share of the followers);
--   uplift: conversion rate of the reached minus that of the hold-out, with a two-sided
--     confidence interval (normal approximation of the difference of two proportions,
--     z = var uplift_confidence_z); NULL without both groups;
--   dormant_reached_customers, reactivated_customers: reached customers dormant as of
--     their push, and those of them who ordered within var winback_conversion_days (30)
--     (winback_conversion_rate per campaign);
--   is_complete: the 30 days after the campaign's last push are over at the end of D.

--
-- Incremental by campaign: a night recomputes the campaigns pushed on or after the first
-- date the rows delivered (or moved to another customer) since the last build can change
-- (recomputed_months_from: late orders change the stages as of every later push and the
-- conversion of the pushes of the attribution window before them; late interactions, the
-- followers seen before a push), less the attribution window, and every campaign whose
-- window is still open; the older campaigns stay as stored (each reads every follower of
-- its platform: rebuilding them all was the night's largest model).

{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='campaign_id',
        on_schema_change='append_new_columns',
    )
}}

-- depends_on: {{ ref('stg_raw__orders') }}, {{ ref('stg_raw__service_events') }},
-- {{ ref('stg_raw__social_interactions') }}, {{ ref('stg_raw__customers') }},
-- {{ ref('int_source_records_logged') }} (read by recomputed_months_from in incremental
-- runs)

{%- set attribution_minutes = var('campaign_attribution_days') * 1440 %}
{%- set z = var('uplift_confidence_z') %}

with

social_interactions as (
    select * from {{ ref('fct_social_interactions') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
    where customer_id is not null and not is_cancelled
),

pushes as (
    select
        interaction_id,
        campaign_id,
        customer_id,
        platform,
        occurred_at as pushed_at,
        occurred_date as push_date,
        coalesce(is_campaign_responded_7d, false) as is_responded
    from social_interactions
    where
        interaction_type = 'campaign_push'
        and direction = 'outbound'
        and customer_id is not null
        and campaign_id is not null
),

campaigns as (
    select
        campaign_id,
        min(platform) as platform,
        min(pushed_at) as first_pushed_at,
        min(push_date) as campaign_date,
        max(pushed_at) as last_pushed_at
    from pushes
    group by campaign_id
    {% if is_incremental() %}
    -- the campaigns the night recomputes (see the top); every one when no build is recorded
    having
        max(push_date) >= {{ add_days(recomputed_months_from(), -(var('campaign_attribution_days') + 1)) }}
        or {{ last_built_as_of('fct_campaign_performance') }} is null
    {% endif %}
),

-- First push of each campaign to each customer, with the customer's order dates up to it.
campaign_customers as (
    select
        campaign_id,
        customer_id,
        min(pushed_at) as pushed_at,
        min(push_date) as push_date
    from pushes
    where campaign_id in (select campaigns.campaign_id from campaigns)
    group by campaign_id, customer_id
),

reached as (
    select
        campaign_customers.campaign_id,
        campaign_customers.customer_id,
        min(case when orders.order_date <= campaign_customers.push_date then orders.order_date end) as first_order_date,
        max(case when orders.order_date <= campaign_customers.push_date then orders.order_date end) as last_order_date,
        campaign_customers.push_date,
        max(
            case
                when orders.ordered_at > campaign_customers.pushed_at
                    and orders.ordered_at <= {{ add_minutes('campaign_customers.pushed_at', attribution_minutes) }}
                    then 1
                else 0
            end
        ) as is_converted
    from campaign_customers
    left join orders
        on campaign_customers.customer_id = orders.customer_id
    group by campaign_customers.campaign_id, campaign_customers.customer_id, campaign_customers.push_date
),

reached_segmented as (
    select
        campaign_id,
        customer_id,
        {{ lifecycle_stage('first_order_date', 'last_order_date', 'push_date') }} as segment,
        is_converted
    from reached
),

push_segments as (
    select
        pushes.campaign_id,
        reached_segmented.segment,
        count(*) as pushes,
        count(case when pushes.is_responded then 1 end) as responded_pushes
    from pushes
    inner join reached_segmented
        on pushes.campaign_id = reached_segmented.campaign_id and pushes.customer_id = reached_segmented.customer_id
    group by pushes.campaign_id, reached_segmented.segment
),

-- Last-touch attribution: each order to the latest push to its customer before it, within
-- the attribution window (ties at the same instant: the larger interaction id).
order_touches as (
    select
        orders.order_id,
        orders.net_revenue,
        pushes.campaign_id,
        pushes.customer_id,
        row_number() over (
            partition by orders.order_id
            order by pushes.pushed_at desc, pushes.interaction_id desc
        ) as touch_rank
    from orders
    inner join pushes
        on
            orders.customer_id = pushes.customer_id
            and orders.ordered_at > pushes.pushed_at
            and orders.ordered_at <= {{ add_minutes('pushes.pushed_at', attribution_minutes) }}
),

attributed as (
    select
        order_touches.campaign_id,
        reached_segmented.segment,
        count(*) as attributed_orders,
        sum(order_touches.net_revenue) as attributed_net_revenue
    from order_touches
    inner join reached_segmented
        on
            order_touches.campaign_id = reached_segmented.campaign_id
            and order_touches.customer_id = reached_segmented.customer_id
    where order_touches.touch_rank = 1
    group by order_touches.campaign_id, reached_segmented.segment
),

-- Hold-out: customers with an account on the campaign's platform seen before its first
-- push, not pushed by it.
platform_customers as (
    select
        customer_id,
        platform,
        min(occurred_at) as first_seen_at
    from social_interactions
    where customer_id is not null
    group by customer_id, platform
),

holdout as (
    select
        campaigns.campaign_id,
        platform_customers.customer_id,
        campaigns.campaign_date,
        min(case when orders.order_date <= campaigns.campaign_date then orders.order_date end) as first_order_date,
        max(case when orders.order_date <= campaigns.campaign_date then orders.order_date end) as last_order_date,
        max(
            case
                when orders.ordered_at > campaigns.first_pushed_at
                    and orders.ordered_at <= {{ add_minutes('campaigns.first_pushed_at', attribution_minutes) }}
                    then 1
                else 0
            end
        ) as is_converted
    from campaigns
    inner join platform_customers
        on
            campaigns.platform = platform_customers.platform
            and campaigns.first_pushed_at > platform_customers.first_seen_at
    left join campaign_customers
        on
            campaigns.campaign_id = campaign_customers.campaign_id
            and platform_customers.customer_id = campaign_customers.customer_id
    left join orders
        on platform_customers.customer_id = orders.customer_id
    where campaign_customers.customer_id is null
    group by campaigns.campaign_id, platform_customers.customer_id, campaigns.campaign_date
),

holdout_segmented as (
    select
        campaign_id,
        {{ lifecycle_stage('first_order_date', 'last_order_date', 'campaign_date') }} as segment,
        is_converted
    from holdout
),

reached_groups as (
    select
        campaign_id,
        segment,
        count(*) as reached_customers,
        sum(is_converted) as converted_customers,
        count(case when segment = 'dormant' then 1 end) as dormant_reached_customers,
        sum(case when segment = 'dormant' then is_converted else 0 end) as reactivated_customers
    from reached_segmented
    group by campaign_id, segment
),

holdout_groups as (
    select
        campaign_id,
        segment,
        count(*) as holdout_customers,
        sum(is_converted) as holdout_converted_customers
    from holdout_segmented
    group by campaign_id, segment
),

by_segment as (
    select
        reached_groups.campaign_id,
        reached_groups.segment,
        push_segments.pushes,
        reached_groups.reached_customers,
        push_segments.responded_pushes,
        coalesce(attributed.attributed_orders, 0) as attributed_orders,
        coalesce(attributed.attributed_net_revenue, 0) as attributed_net_revenue,
        reached_groups.converted_customers,
        coalesce(holdout_groups.holdout_customers, 0) as holdout_customers,
        coalesce(holdout_groups.holdout_converted_customers, 0) as holdout_converted_customers,
        reached_groups.dormant_reached_customers,
        reached_groups.reactivated_customers
    from reached_groups
    inner join push_segments
        on reached_groups.campaign_id = push_segments.campaign_id and reached_groups.segment = push_segments.segment
    left join attributed
        on reached_groups.campaign_id = attributed.campaign_id and reached_groups.segment = attributed.segment
    left join holdout_groups
        on reached_groups.campaign_id = holdout_groups.campaign_id and reached_groups.segment = holdout_groups.segment
),

-- The 'all' row sums the segments: its hold-out is the union of the per-segment hold-outs
-- of the segments the campaign reached (customers of a segment it never pushed are no
-- comparison for it).
with_all as (
    select * from by_segment
    union all
    select
        campaign_id,
        'all' as segment,
        sum(pushes) as pushes,
        sum(reached_customers) as reached_customers,
        sum(responded_pushes) as responded_pushes,
        sum(attributed_orders) as attributed_orders,
        sum(attributed_net_revenue) as attributed_net_revenue,
        sum(converted_customers) as converted_customers,
        sum(holdout_customers) as holdout_customers,
        sum(holdout_converted_customers) as holdout_converted_customers,
        sum(dormant_reached_customers) as dormant_reached_customers,
        sum(reactivated_customers) as reactivated_customers
    from by_segment
    group by campaign_id
),

rated as (
    select
        with_all.*,
        {{ safe_ratio('with_all.converted_customers', 'with_all.reached_customers') }} as conversion_rate,
        {{ safe_ratio('with_all.holdout_converted_customers', 'with_all.holdout_customers') }} as holdout_conversion_rate
    from with_all
),

final as (
    select
        rated.campaign_id || '|' || rated.segment as campaign_segment_id,
        rated.campaign_id,
        campaigns.campaign_date,
        rated.segment,
        cast(rated.pushes as bigint) as pushes,
        cast(rated.reached_customers as bigint) as reached_customers,
        cast(rated.responded_pushes as bigint) as responded_pushes,
        {{ safe_ratio('rated.responded_pushes', 'rated.pushes') }} as response_rate,
        cast(rated.attributed_orders as bigint) as attributed_orders,
        cast(rated.attributed_net_revenue as decimal(18, 2)) as attributed_net_revenue,
        cast(rated.converted_customers as bigint) as converted_customers,
        rated.conversion_rate,
        cast(rated.holdout_customers as bigint) as holdout_customers,
        cast(rated.holdout_converted_customers as bigint) as holdout_converted_customers,
        rated.holdout_conversion_rate,
        rated.conversion_rate - rated.holdout_conversion_rate as uplift,
        rated.conversion_rate - rated.holdout_conversion_rate - cast({{ z }} as double) * sqrt(
            rated.conversion_rate * (1 - rated.conversion_rate) / nullif(rated.reached_customers, 0)
            + rated.holdout_conversion_rate * (1 - rated.holdout_conversion_rate) / nullif(rated.holdout_customers, 0)
        ) as uplift_ci_low,
        rated.conversion_rate - rated.holdout_conversion_rate + cast({{ z }} as double) * sqrt(
            rated.conversion_rate * (1 - rated.conversion_rate) / nullif(rated.reached_customers, 0)
            + rated.holdout_conversion_rate * (1 - rated.holdout_conversion_rate) / nullif(rated.holdout_customers, 0)
        ) as uplift_ci_high,
        (
            rated.reached_customers < {{ var('min_segment_base') }}
            or rated.holdout_customers < {{ var('min_segment_base') }}
        ) as is_small_base,
        cast(rated.dormant_reached_customers as bigint) as dormant_reached_customers,
        cast(rated.reactivated_customers as bigint) as reactivated_customers,
        {{ safe_ratio('rated.reactivated_customers', 'rated.dormant_reached_customers') }} as reactivation_rate,
        case when {{ is_window_open("campaigns.last_pushed_at", attribution_minutes) }} then false else true end as is_complete
    from rated
    inner join campaigns
        on rated.campaign_id = campaigns.campaign_id
)

select * from final
