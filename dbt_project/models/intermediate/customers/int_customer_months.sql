{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='month',
        on_schema_change='append_new_columns',
    )
}}

-- depends_on: {{ ref('stg_raw__orders') }}, {{ ref('stg_raw__service_events') }},
-- {{ ref('stg_raw__social_interactions') }}, {{ ref('stg_raw__customers') }},
-- {{ ref('int_source_records_logged') }} (read by recomputed_months_from in incremental runs)

-- One row per customer and month from the month of the customer's first order to the
-- month of D: the customer's order state at start(M) and end(M), the facts every
-- customer KPI counts (metrics.md, "KPIs"), and the segments a customer belongs to as of
-- start(M) (flow KPIs) and end(M) (point-in-time KPIs): VIP, lifecycle stage, and the RF
-- segment as of start(M) (scores ranked among the month's customers with an order on or
-- before start(M)).
--
-- Incremental by month, like fct_kpi_monthly, its only reader: a nightly run recomputes
-- the months from the month of its cutoff or the first month touched by rows delivered
-- (or records moved to another customer) since (recomputed_months_from; every customer
-- in them) and leaves older months as they were (fct_kpi_monthly does not read them
-- again); a full build computes every month. The running totals of the computed
-- months start from the customer's state before the first computed month (orders and
-- last order date before it), so both give the same rows.

with

orders as (
    select * from {{ ref('fct_orders') }}
    where customer_id is not null and not is_cancelled
),

rfm_segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

all_months as (
    select * from {{ ref('int_kpi_months') }}
),

months as (
    select * from all_months
    {% if is_incremental() %}
    -- from the earlier of this model's cutoff and its reader's (fct_kpi_monthly recomputes
    -- from its own last build, which may be older); every month when no build of this
    -- model is recorded (the first build after an upgrade)
    where
        month >= {{ recomputed_months_from() }}
        or {{ last_built_as_of('int_customer_months') }} is null
    {% endif %}
),

first_computed_month as (
    select min(month) as month from months
),

state_before as (
    -- each customer's state at the end of the month before the first computed month
    select
        orders.customer_id,
        count(*) as orders_before,
        max(orders.order_date) as last_order_date_before
    from orders
    inner join first_computed_month
        on orders.order_date < first_computed_month.month
    group by orders.customer_id
),

first_orders as (
    select
        customer_id,
        min(order_date) as first_order_date
    from orders
    group by customer_id
),

monthly_orders as (
    select
        customer_id,
        {{ month_start('order_date') }} as month,
        count(*) as orders_in_month,
        sum(net_revenue) as net_revenue_in_month,
        max(order_date) as last_order_date_in_month
    from orders
    where order_date >= (select first_computed_month.month from first_computed_month)
    group by customer_id, {{ month_start('order_date') }}
),

window_365d as (
    -- orders and net revenue with order date in [start(M) - 364, start(M)] (the state as
    -- of start(M): VIP, RFM frequency) and in [end(M) - 364, end(M)] (VIP as of end(M))
    select
        months.month,
        orders.customer_id,
        count(case when orders.order_date <= months.start_date then 1 end) as orders_365d_at_start,
        sum(case when orders.order_date <= months.start_date then orders.net_revenue end)
            as net_revenue_365d_at_start,
        sum(
            case
                when orders.order_date >= {{ add_days('months.end_date', -var('revenue_window_days')) }}
                    then orders.net_revenue
            end
        ) as net_revenue_365d_at_end
    from orders
    inner join months
        on orders.order_date <= months.end_date
            and orders.order_date >= {{ add_days('months.start_date', -var('revenue_window_days')) }}
    group by months.month, orders.customer_id
),

grid as (
    select
        first_orders.customer_id,
        first_orders.first_order_date,
        months.month,
        months.start_date,
        months.end_date,
        coalesce(monthly_orders.orders_in_month, 0) as orders_in_month,
        coalesce(monthly_orders.net_revenue_in_month, 0) as net_revenue_in_month,
        monthly_orders.last_order_date_in_month,
        coalesce(window_365d.orders_365d_at_start, 0) as orders_365d_at_start,
        coalesce(window_365d.net_revenue_365d_at_start, 0) as net_revenue_365d_at_start,
        coalesce(window_365d.net_revenue_365d_at_end, 0) as net_revenue_365d_at_end,
        coalesce(state_before.orders_before, 0) as orders_before,
        state_before.last_order_date_before
    from first_orders
    inner join months
        on first_orders.first_order_date <= months.end_date
    left join monthly_orders
        on first_orders.customer_id = monthly_orders.customer_id
            and months.month = monthly_orders.month
    left join window_365d
        on first_orders.customer_id = window_365d.customer_id
            and months.month = window_365d.month
    left join state_before
        on first_orders.customer_id = state_before.customer_id
),

cumulated as (
    select
        *,
        orders_before + sum(orders_in_month) over customer_months as orders_lifetime_at_end,
        coalesce(max(last_order_date_in_month) over customer_months, last_order_date_before)
            as last_order_date_at_end
    from grid
    window customer_months as (
        partition by customer_id order by month rows between unbounded preceding and current row
    )
),

with_start as (
    -- the previous month is complete, so its end is this month's start(M)
    select
        *,
        coalesce(lag(orders_lifetime_at_end) over (partition by customer_id order by month), orders_before)
            as orders_lifetime_at_start,
        coalesce(lag(last_order_date_at_end) over (partition by customer_id order by month), last_order_date_before)
            as last_order_date_at_start
    from cumulated
),

customer_states as (
    select
        customer_id || '|' || {{ month_label('month') }} as customer_month_id,
        customer_id,
        month,
        start_date,
        end_date,
        first_order_date,
        orders_in_month,
        net_revenue_in_month,
        orders_lifetime_at_start,
        orders_lifetime_at_end,
        last_order_date_at_start,
        last_order_date_at_end,
        orders_365d_at_start,
        net_revenue_365d_at_start,
        net_revenue_365d_at_end,
        {{ days_between('last_order_date_at_start', 'start_date') }} as recency_days_at_start,
        orders_in_month > 0 as is_purchasing,
        first_order_date between month and end_date as is_new_in_month,
        {{ is_active_as_of('last_order_date_at_start', 'start_date') }} as is_active_at_start,
        {{ is_active_as_of('last_order_date_at_end', 'end_date') }} as is_active_at_end,
        {{ is_dormant_as_of('last_order_date_at_start', 'start_date') }} as is_dormant_at_start,
        net_revenue_365d_at_start >= {{ var('vip_revenue_365d') }} as is_vip_at_start,
        net_revenue_365d_at_end >= {{ var('vip_revenue_365d') }} as is_vip_at_end,
        {{ lifecycle_stage(
            'case when first_order_date <= start_date then first_order_date end',
            'last_order_date_at_start',
            'start_date'
        ) }} as lifecycle_stage_at_start,
        {{ lifecycle_stage('first_order_date', 'last_order_date_at_end', 'end_date') }} as lifecycle_stage_at_end
    from with_start
),

rf_scored_at_start as (
    -- RF scores as of start(M) (metrics.md, "RFM") among the customers with an order on or
    -- before start(M), ranked within the month: a month's scores need that month's rows only
    select
        customer_month_id,
        {{ rfm_score('recency_days_at_start desc', 'month') }} as r_score_at_start,
        {{ rfm_score('orders_365d_at_start asc', 'month') }} as f_score_at_start
    from customer_states
    where orders_lifetime_at_start > 0
),

rf_segmented_at_start as (
    select
        rf_scored_at_start.*,
        rfm_segment_map.segment as rfm_segment_at_start
    from rf_scored_at_start
    left join rfm_segment_map
        on rf_scored_at_start.r_score_at_start between rfm_segment_map.r_min and rfm_segment_map.r_max
            and rf_scored_at_start.f_score_at_start between rfm_segment_map.f_min and rfm_segment_map.f_max
    qualify
        row_number() over (
            partition by rf_scored_at_start.customer_month_id
            order by rfm_segment_map.priority
        ) = 1
),

final as (
    select
        customer_states.*,
        rf_segmented_at_start.r_score_at_start,
        rf_segmented_at_start.f_score_at_start,
        rf_segmented_at_start.rfm_segment_at_start
    from customer_states
    left join rf_segmented_at_start
        on customer_states.customer_month_id = rf_segmented_at_start.customer_month_id
)

select * from final
