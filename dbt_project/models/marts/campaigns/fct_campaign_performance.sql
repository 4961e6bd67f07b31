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
-- push, not pushed by it; their stage as of the campaign's date and whether they ordered
-- within the attribution window after its first push. Counted without pairing every
-- campaign with every follower (campaigns x followers grows with customers times history):
-- a follower's state (seen yet, stage, an order in the next 30 days) changes at a few
-- instants (first seen; the start of each stage span of its order dates; 30 days before
-- and at each order), so the followers in each state at any instant are running sums of
-- the state changes, read at each campaign's first push; its pushed customers are taken
-- back out. Ties at the push instant: a follower first seen at it does not count, a stage
-- or window that starts at it does (`tie` orders them around the campaign's reading).
platform_customers as (
    select
        customer_id,
        platform,
        min(occurred_at) as first_seen_at
    from social_interactions
    where customer_id is not null
    group by customer_id, platform
),

-- The instants the campaigns read the followers at (each campaign's first push), and the
-- business date of the first: an event after the last reading changes none, an order's
-- window only counts where it spans a reading, and a follower's stage at the first
-- reading follows from its first order and its last order up to that date.
readings as (
    select
        min(first_pushed_at) as first_reading_at,
        max(first_pushed_at) as last_reading_at,
        min(campaign_date) as first_reading_date
    from campaigns
),

first_orders as (
    select
        orders.customer_id,
        min(orders.order_date) as first_order_date,
        max(case when orders.order_date <= readings.first_reading_date then orders.order_date end)
            as last_order_date_at_first_reading
    from orders
    cross join readings
    group by orders.customer_id
),

-- the order dates whose stage spans can start after the first reading
order_dates as (
    select distinct
        orders.customer_id,
        orders.order_date
    from orders
    cross join readings
    where orders.order_date >= {{ add_days('readings.first_reading_date', -(var('lifecycle_dormant_days') + 2)) }}
),

order_date_spans as (
    select
        order_dates.customer_id,
        order_dates.order_date,
        first_orders.first_order_date,
        lead(order_dates.order_date) over (
            partition by order_dates.customer_id order by order_dates.order_date
        ) as next_order_date
    from order_dates
    inner join first_orders on order_dates.customer_id = first_orders.customer_id
),

-- metrics.md lifecycle_stage as spans of days after each order date (macro lifecycle_stage)
stage_phases as (
    select
        'active' as stage_name,
        0 as from_days,
        {{ var('lifecycle_active_days') + 1 }} as to_days
    union all
    select
        'dormant' as stage_name,
        {{ var('lifecycle_active_days') + 1 }} as from_days,
        {{ var('lifecycle_dormant_days') + 1 }} as to_days
    union all
    select
        'churned' as stage_name,
        {{ var('lifecycle_dormant_days') + 1 }} as from_days,
        null as to_days
),

-- The first day of each stage span: new from the first order for lifecycle_new_days + 1
-- days; after that, from each order date up to the next, active, dormant, churned.
stage_starts as (
    select
        customer_id,
        first_order_date as start_date,
        'new' as stage_name
    from first_orders
    union all
    select
        customer_id,
        start_date,
        stage_name
    from (
        select
            order_date_spans.customer_id,
            stage_phases.stage_name,
            order_date_spans.next_order_date,
            greatest(
                {{ add_days('order_date_spans.order_date', 'stage_phases.from_days') }},
                {{ add_days('order_date_spans.first_order_date', var('lifecycle_new_days') + 1) }}
            ) as start_date,
            {{ add_days('order_date_spans.order_date', 'stage_phases.to_days') }} as end_date
        from order_date_spans
        cross join stage_phases
    ) as spans
    where
        (next_order_date is null or start_date < next_order_date)
        and (end_date is null or start_date < end_date)
),

stage_events as (
    select
        customer_id,
        stage_name,
        {{ business_day_end_utc(add_days('start_date', -1)) }} as event_at
    from stage_starts
),

stage_events_read as (
    select
        stage_events.customer_id,
        stage_events.stage_name,
        stage_events.event_at
    from stage_events
    cross join readings
    where stage_events.event_at > readings.first_reading_at and stage_events.event_at <= readings.last_reading_at
    union all
    select
        first_orders.customer_id,
        {{ lifecycle_stage(
            'case when first_orders.first_order_date <= readings.first_reading_date then first_orders.first_order_date end',
            'first_orders.last_order_date_at_first_reading',
            'readings.first_reading_date'
        ) }} as stage_name,
        readings.first_reading_at as event_at
    from first_orders
    cross join readings
),

order_windows as (
    select
        orders.customer_id,
        {{ add_minutes('orders.ordered_at', -attribution_minutes) }} as opens_at,
        orders.ordered_at as closes_at
    from orders
    cross join readings
    where
        orders.ordered_at > readings.first_reading_at
        and {{ add_minutes('orders.ordered_at', -attribution_minutes) }} <= readings.last_reading_at
),

-- each window opens (+1) at 30 days before its order and closes (-1) at the order
order_window_edges as (
    select
        customer_id,
        opens_at as event_at,
        1 as window_change
    from order_windows
    union all
    select
        customer_id,
        closes_at as event_at,
        -1 as window_change
    from order_windows
),

follower_events as (
    select
        platform_customers.customer_id,
        platform_customers.platform,
        stage_events_read.event_at,
        0 as tie,
        stage_events_read.stage_name,
        0 as window_change,
        0 as seen
    from stage_events_read
    inner join platform_customers on stage_events_read.customer_id = platform_customers.customer_id
    union all
    select
        platform_customers.customer_id,
        platform_customers.platform,
        order_window_edges.event_at,
        0 as tie,
        null as stage_name,
        order_window_edges.window_change,
        0 as seen
    from order_window_edges
    inner join platform_customers on order_window_edges.customer_id = platform_customers.customer_id
    union all
    select
        platform_customers.customer_id,
        platform_customers.platform,
        platform_customers.first_seen_at as event_at,
        2 as tie,
        null as stage_name,
        0 as window_change,
        1 as seen
    from platform_customers
    cross join readings
    where platform_customers.first_seen_at < readings.last_reading_at
),

-- each follower's state after the events of each instant (peers share their frame)
follower_states as (
    select distinct
        customer_id,
        platform,
        event_at,
        tie,
        coalesce({{ last_known_value('stage_name') }} over follower_timeline, 'prospect') as stage_name,
        sum(window_change) over follower_timeline > 0 as is_converted,
        max(seen) over follower_timeline = 1 as is_seen
    from follower_events
    window follower_timeline as (partition by customer_id, platform order by event_at, tie)
),

follower_steps as (
    select
        platform,
        event_at,
        tie,
        stage_name,
        is_converted,
        is_seen,
        lag(stage_name) over follower_order as previous_stage,
        lag(is_converted) over follower_order as previous_is_converted,
        coalesce(lag(is_seen) over follower_order, false) as was_seen
    from follower_states
    window follower_order as (partition by customer_id, platform order by event_at, tie)
),

follower_changes as (
    select
        platform,
        event_at,
        tie,
        stage_name,
        is_converted,
        sum(follower_change) as follower_change
    from (
        select
            platform,
            event_at,
            tie,
            stage_name,
            is_converted,
            1 as follower_change
        from follower_steps
        where is_seen
        union all
        select
            platform,
            event_at,
            tie,
            previous_stage as stage_name,
            previous_is_converted as is_converted,
            -1 as follower_change
        from follower_steps
        where was_seen
    ) as changes
    group by platform, event_at, tie, stage_name, is_converted
),

reading_states as (
    select distinct stage_name from stage_phases
    union all
    select 'new' as stage_name
    union all
    select 'prospect' as stage_name
),

reading_flags as (
    select true as is_converted
    union all
    select false as is_converted
),

campaign_readings as (
    select
        campaigns.campaign_id,
        campaigns.platform,
        campaigns.first_pushed_at as event_at,
        1 as tie,
        reading_states.stage_name,
        reading_flags.is_converted,
        0 as follower_change
    from campaigns
    cross join reading_states
    cross join reading_flags
),

followers_at_push as (
    select
        campaign_id,
        stage_name,
        is_converted,
        sum(follower_change) over (
            partition by platform, stage_name, is_converted
            order by event_at, tie
            rows between unbounded preceding and current row
        ) as followers
    from (
        select
            cast(null as string) as campaign_id,
            platform,
            event_at,
            tie,
            stage_name,
            is_converted,
            follower_change
        from follower_changes
        union all
        select
            campaign_id,
            platform,
            event_at,
            tie,
            stage_name,
            is_converted,
            follower_change
        from campaign_readings
    ) as timeline
),

-- the campaign's own pushed customers among those followers, taken back out
pushed_followers as (
    select
        campaigns.campaign_id,
        campaign_customers.customer_id,
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
    from campaign_customers
    inner join campaigns on campaign_customers.campaign_id = campaigns.campaign_id
    inner join platform_customers
        on
            campaign_customers.customer_id = platform_customers.customer_id
            and campaigns.platform = platform_customers.platform
            and campaigns.first_pushed_at > platform_customers.first_seen_at
    left join orders on campaign_customers.customer_id = orders.customer_id
    group by campaigns.campaign_id, campaign_customers.customer_id, campaigns.campaign_date
),

pushed_follower_groups as (
    select
        campaign_id,
        {{ lifecycle_stage('first_order_date', 'last_order_date', 'campaign_date') }} as segment,
        count(*) as customers,
        sum(is_converted) as converted_customers
    from pushed_followers
    group by campaign_id, {{ lifecycle_stage('first_order_date', 'last_order_date', 'campaign_date') }}
),

holdout_groups as (
    select
        followers.campaign_id,
        followers.segment,
        followers.followers - coalesce(pushed_follower_groups.customers, 0) as holdout_customers,
        followers.converted_followers - coalesce(pushed_follower_groups.converted_customers, 0)
            as holdout_converted_customers
    from (
        select
            campaign_id,
            stage_name as segment,
            sum(followers) as followers,
            sum(case when is_converted then followers else 0 end) as converted_followers
        from followers_at_push
        where campaign_id is not null
        group by campaign_id, stage_name
    ) as followers
    left join pushed_follower_groups
        on followers.campaign_id = pushed_follower_groups.campaign_id and followers.segment = pushed_follower_groups.segment
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
