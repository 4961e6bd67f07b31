{{ config(materialized='table') }}

-- A table: as a view, fct_kpi_monthly read only the months of its window, but each of the
-- three data tests computed every month again (3 to 5 s each at the large preset;
-- one build of the table costs about one of them; docs/performance.md).
--
-- Customer and order KPIs per month and segment (metrics.md, "KPIs" and "Segments"),
-- long format. docs/warehouse.md, "KPI segments":
--   all              every KPI below; orders / net_revenue / aov count ALL orders,
--                    including those of no resolved customer (revenue still counts)
--   vip              flow KPIs: customers with is_vip as of start(M); active_customers:
--                    is_vip as of end(M)
--   lifecycle_stage  flow KPIs: the stage as of start(M) (prospect = no order on or before
--                    start(M)); active_customers: the stage as of end(M), new and active
--                    only (dormant and churned customers are never active)
--   quadrant         the value x potential quadrant as of D (int_customers_quadrant_assigned),
--                    for the month of D only: the CLV model behind "high potential" is
--                    scored as of D only, so no earlier month has a quadrant
--   rfm_segment      the RF segment as of start(M) (int_customer_months), customers with an
--                    order on or before start(M); flow KPIs only
--   channel          the order's channel (fct_orders.channel, 'unknown' when missing):
--                    orders / net_revenue / aov of every order of the channel (also those
--                    of no resolved customer, so the channels add up to segment all) and
--                    purchasing_customers = resolved customers with an order of the channel
-- Each membership row carries its basis: 'start' (flow KPIs), 'end' (point-in-time KPIs),
-- 'as_of_date' (quadrant, every KPI) or 'none' (all); a KPI reads the rows of its basis.

with

customer_months as (
    select * from {{ ref('int_customer_months') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

quadrants as (
    select * from {{ ref('int_customers_quadrant_assigned') }}
),

channel_orders as (
    select
        {{ month_start('order_date') }} as month,
        coalesce(channel, 'unknown') as channel,
        count(*) as orders,
        sum(net_revenue) as net_revenue,
        count(distinct customer_id) as purchasing_customers
    from orders
    where not is_cancelled
    group by {{ month_start('order_date') }}, coalesce(channel, 'unknown')
),

memberships as (
    select
        customer_months.*,
        'all' as segment_type,
        'all' as segment,
        'none' as basis
    from customer_months

    union all

    select
        customer_months.*,
        'vip' as segment_type,
        'vip' as segment,
        'start' as basis
    from customer_months
    where is_vip_at_start

    union all

    select
        customer_months.*,
        'vip' as segment_type,
        'vip' as segment,
        'end' as basis
    from customer_months
    where is_vip_at_end

    union all

    select
        customer_months.*,
        'lifecycle_stage' as segment_type,
        lifecycle_stage_at_start as segment,
        'start' as basis
    from customer_months

    union all

    select
        customer_months.*,
        'lifecycle_stage' as segment_type,
        lifecycle_stage_at_end as segment,
        'end' as basis
    from customer_months
    where lifecycle_stage_at_end in ('new', 'active')

    union all

    select
        customer_months.*,
        'rfm_segment' as segment_type,
        rfm_segment_at_start as segment,
        'start' as basis
    from customer_months
    where rfm_segment_at_start is not null

    union all

    select
        customer_months.*,
        'quadrant' as segment_type,
        quadrants.quadrant as segment,
        'as_of_date' as basis
    from customer_months
    inner join quadrants
        on customer_months.customer_id = quadrants.customer_id
    where customer_months.month = {{ month_start(as_of_date()) }}
),

measures as (
    select
        month,
        segment_type,
        segment,
        basis,
        count(case when is_purchasing then 1 end) as purchasing_customers,
        count(case when is_new_in_month then 1 end) as new_customers,
        count(case when is_active_at_end then 1 end) as active_customers,
        sum(orders_in_month) as customer_orders,
        sum(net_revenue_in_month) as customer_net_revenue,
        count(case when orders_lifetime_at_start > 0 then 1 end) as ordered_by_start,
        count(case when orders_lifetime_at_start > 0 and is_purchasing then 1 end) as repurchasing_customers,
        count(case when is_purchasing and orders_lifetime_at_end >= 2 then 1 end) as returning_customers,
        count(case when is_active_at_start then 1 end) as active_at_start,
        count(case when is_active_at_start and not is_active_at_end then 1 end) as churned_customers,
        count(case when is_dormant_at_start then 1 end) as dormant_at_start,
        count(case when is_dormant_at_start and is_purchasing then 1 end) as reactivated_customers,
        count(case when is_vip_at_end then 1 end) as vip_customers
    from memberships
    group by month, segment_type, segment, basis
),

all_orders as (
    select
        {{ month_start('order_date') }} as month,
        count(*) as orders,
        sum(net_revenue) as net_revenue
    from orders
    where not is_cancelled
    group by {{ month_start('order_date') }}
),

with_totals as (
    select
        measures.*,
        case when measures.segment_type = 'all' then coalesce(all_orders.orders, 0) else measures.customer_orders end
            as orders,
        case
            when measures.segment_type = 'all' then coalesce(all_orders.net_revenue, 0)
            else measures.customer_net_revenue
        end as net_revenue
    from measures
    left join all_orders
        on measures.month = all_orders.month
),

channel_totals as (
    select
        month,
        'channel' as segment_type,
        channel as segment,
        'start' as basis,
        purchasing_customers,
        orders,
        net_revenue
    from channel_orders
),

unpivoted as (
    {#- (kpi, numerator, denominator, the membership bases it reads, which segments) -#}
    {%- set customer_segments = "segment_type in ('all', 'vip', 'lifecycle_stage', 'quadrant')" -%}
    {%- set flow = "basis in ('none', 'start', 'as_of_date')" -%}
    {%- set point_in_time = "basis in ('none', 'end', 'as_of_date')" -%}
    {%- set kpis = [
        ('purchasing_customers', 'purchasing_customers', 'null', flow, none),
        ('new_customers', 'new_customers', 'null', flow, customer_segments),
        ('active_customers', 'active_customers', 'null', point_in_time, customer_segments),
        ('orders', 'orders', 'null', flow, none),
        ('net_revenue', 'net_revenue', 'null', flow, none),
        ('aov', 'net_revenue', 'orders', flow, none),
        ('repurchase_rate', 'repurchasing_customers', 'ordered_by_start', flow, "segment <> 'prospect'"),
        ('returning_customer_rate', 'returning_customers', 'purchasing_customers', flow, none),
        ('churn_rate', 'churned_customers', 'active_at_start', flow,
            "segment_type in ('all', 'quadrant', 'rfm_segment') or segment in ('new', 'active')"),
        ('dormant_reactivation_rate', 'reactivated_customers', 'dormant_at_start', flow,
            "segment_type in ('all', 'quadrant', 'rfm_segment') or segment = 'dormant'"),
        ('vip_customers', 'vip_customers', 'null', point_in_time, "segment_type = 'all'")
    ] %}
    {%- set channel_kpis = ['purchasing_customers', 'orders', 'net_revenue', 'aov'] %}
    {%- for kpi, numerator, denominator, bases, condition in kpis %}
    select
        month,
        segment_type,
        segment,
        '{{ kpi }}' as kpi,
        cast({{ numerator }} as double) as numerator,
        cast({{ denominator }} as double) as denominator,
        {% if denominator == 'null' -%}
        cast({{ numerator }} as double)
        {%- else -%}
        {{ safe_ratio(numerator, denominator) }}
        {%- endif %} as value
    from with_totals
    where
        {{ bases }}
        {%- if condition %}
        and ({{ condition }})
        {%- endif %}
    union all
    {%- endfor %}
    {%- for kpi, numerator, denominator, bases, condition in kpis if kpi in channel_kpis %}
    select
        month,
        segment_type,
        segment,
        '{{ kpi }}' as kpi,
        cast({{ numerator }} as double) as numerator,
        cast({{ denominator }} as double) as denominator,
        {% if denominator == 'null' -%}
        cast({{ numerator }} as double)
        {%- else -%}
        {{ safe_ratio(numerator, denominator) }}
        {%- endif %} as value
    from channel_totals
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

keyed as (
    select
        {{ month_label('month') }} || '|' || segment || '|' || kpi as kpi_row_id,
        *
    from unpivoted
)

select * from keyed
