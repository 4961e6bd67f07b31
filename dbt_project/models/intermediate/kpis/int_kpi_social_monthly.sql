{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='month',
        on_schema_change='append_new_columns',
        pre_hook="{% if is_incremental() %}delete from {{ this }} where month >= {{ recomputed_months_from(maturity=true) }}{% endif %}",
    )
}}

-- depends_on: {{ ref('stg_raw__orders') }}, {{ ref('stg_raw__service_events') }},
-- {{ ref('stg_raw__social_interactions') }}, {{ ref('stg_raw__customers') }},
-- {{ ref('int_source_records_logged') }}, {{ ref('kpi_definitions') }} (read by
-- recomputed_months_from in incremental runs)

-- Not a view: as a view it was computed once per reader, and its three data tests and
-- fct_kpi_monthly each recomputed every month of it (37 s per test at the large preset).
-- Incremental by month, like int_customer_months: a nightly run recomputes the months from
-- the earliest of its own first recomputed month and that of fct_kpi_monthly, its only
-- reader (recomputed_months_from), which does not read an older month again; older
-- months stay as they were
-- computed (every month of 22.5 M interactions took 25 s at the large preset each night).
-- The recomputed months reach back by the largest maturity_days too (a month whose
-- campaign or win-back windows were still open at the last build changes with time alone).
-- A month's rows depend on the interactions of that month and on orders of any date, so
-- the computed months read only their own interactions and give the same rows as a full
-- build. The pre-hook deletes every recomputed month first: delete+insert alone would
-- keep the rows of a month left without interactions (one moved to another month).
--
-- Social and campaign KPIs per month, segment all (metrics.md):
--   message_reply_rate: inbound messages in M answered within 24 h (fct flag)
--   campaign_response_rate: campaign pushes in M to resolved customers followed within
--     7 days by an inbound interaction or an order of the customer (fct flag)
--   winback_conversion_rate: customers dormant as of a campaign push they received in M
--     (last order in [push date - 364, push date - 180]) who ordered within 30 days after
--     that push, over those customers
--   social_engaged_customers: resolved customers with an inbound interaction in M
-- Maturity (metrics.md "Maturity"): a message whose 24 h are not over at the end of D, a
-- push whose 7 days are not over, a dormant pushed customer one of whose pushes of M still
-- has its 30 days open, are pending, whatever happened inside the window so far: in
-- neither numerator nor denominator, counted in `pending`. Only events whose window has
-- closed are decided (counting early successes while the failures still wait would bias
-- the provisional value upward).

{%- set message_open = is_window_open('occurred_at', var('message_reply_hours') * 60) %}
{%- set push_open = is_window_open('occurred_at', var('campaign_response_days') * 1440) %}

with

social_interactions as (
    select * from {{ ref('fct_social_interactions') }}
    {% if is_incremental() %}
    where
        occurred_date >= {{ recomputed_months_from(maturity=true) }}
        or {{ last_built_as_of('int_kpi_social_monthly') }} is null
    {% endif %}
),

orders as (
    select * from {{ ref('fct_orders') }}
    where customer_id is not null and not is_cancelled
),

pushes as (
    select
        interaction_id,
        customer_id,
        occurred_at,
        occurred_date
    from social_interactions
    where interaction_type = 'campaign_push' and direction = 'outbound' and customer_id is not null
),

push_states as (
    select
        pushes.interaction_id,
        pushes.customer_id,
        {{ month_start('pushes.occurred_date') }} as month,
        pushes.occurred_date as push_date,
        max(case when orders.order_date <= pushes.occurred_date then orders.order_date end) as last_order_date,
        count(
            case
                when orders.ordered_at > pushes.occurred_at
                    and orders.ordered_at <= {{ add_minutes('pushes.occurred_at', var('winback_conversion_days') * 1440) }}
                    then 1
            end
        ) as orders_after_push,
        {{ is_window_open('pushes.occurred_at', var('winback_conversion_days') * 1440) }} as is_window_open
    from pushes
    left join orders
        on pushes.customer_id = orders.customer_id
    group by pushes.interaction_id, pushes.customer_id, {{ month_start('pushes.occurred_date') }}, pushes.occurred_date, pushes.occurred_at
),

winback_customers as (
    select
        month,
        customer_id,
        max(case when orders_after_push > 0 then 1 else 0 end) as is_converted,
        max(case when is_window_open then 1 else 0 end) as has_open_window
    from push_states
    where {{ is_dormant_as_of('last_order_date', 'push_date') }}
    group by month, customer_id
),

monthly as (
    select
        {{ month_start('occurred_date') }} as month,
        count(case when is_replied_24h and not {{ message_open }} then 1 end) as replied_messages,
        count(case when is_replied_24h is not null and not {{ message_open }} then 1 end) as inbound_messages,
        count(case when is_replied_24h is not null and {{ message_open }} then 1 end) as pending_messages,
        count(case when is_campaign_responded_7d and not {{ push_open }} then 1 end) as responded_pushes,
        count(case when is_campaign_responded_7d is not null and not {{ push_open }} then 1 end) as customer_pushes,
        count(case when is_campaign_responded_7d is not null and {{ push_open }} then 1 end) as pending_pushes,
        count(distinct case when is_inbound then customer_id end) as social_engaged_customers
    from social_interactions
    group by {{ month_start('occurred_date') }}
),

winback as (
    select
        month,
        count(case when is_converted = 1 and has_open_window = 0 then 1 end) as converted_customers,
        count(case when has_open_window = 0 then 1 end) as dormant_pushed_customers,
        count(case when has_open_window = 1 then 1 end) as pending_customers
    from winback_customers
    group by month
),

unpivoted as (
    select
        month,
        'message_reply_rate' as kpi,
        replied_messages as numerator,
        inbound_messages as denominator,
        {{ safe_ratio('replied_messages', 'inbound_messages') }} as value,
        pending_messages as pending
    from monthly
    union all
    select
        month,
        'campaign_response_rate' as kpi,
        responded_pushes as numerator,
        customer_pushes as denominator,
        {{ safe_ratio('responded_pushes', 'customer_pushes') }} as value,
        pending_pushes as pending
    from monthly
    union all
    select
        month,
        'social_engaged_customers' as kpi,
        social_engaged_customers as numerator,
        null as denominator,
        social_engaged_customers as value,
        null as pending
    from monthly
    union all
    select
        month,
        'winback_conversion_rate' as kpi,
        converted_customers as numerator,
        dormant_pushed_customers as denominator,
        {{ safe_ratio('converted_customers', 'dormant_pushed_customers') }} as value,
        pending_customers as pending
    from winback
),

final as (
    select
        {{ month_label('month') }} || '|all|' || kpi as kpi_row_id,
        month,
        'all' as segment_type,
        'all' as segment,
        kpi,
        cast(numerator as double) as numerator,
        cast(denominator as double) as denominator,
        cast(value as double) as value,
        cast(pending as double) as pending
    from unpivoted
)

select * from final
