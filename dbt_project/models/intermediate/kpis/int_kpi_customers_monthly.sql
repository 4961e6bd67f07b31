{{ config(materialized='table') }}

-- A table: as a view, fct_kpi_monthly read only the months of its window, but each of the
-- three data tests computed every month again (3 to 5 s each at the large preset;
-- one build of the table costs about one of them; docs/performance.md).
--
-- Customer and order KPIs per month and segment (metrics.md, "KPIs"), long format.
--
-- Segments (docs/warehouse.md, "KPI segments"):
--   all              every KPI below; orders / net_revenue / aov count ALL orders,
--                    including those of no resolved customer (revenue still counts)
--   vip              customers with is_vip as of end(M)
--   lifecycle_stage  the customer's lifecycle stage as of start(M) (prospect = no order
--                    before M, new, active, dormant, churned)
--   quadrant         the value x potential quadrant as of D (int_customers_quadrant_assigned),
--                    for the month of D only: the CLV model behind "high potential" is
--                    scored as of D only, so no earlier month has a quadrant
-- For vip, lifecycle and quadrant segments: the customer-order family
-- (purchasing_customers, new_customers, active_customers, orders, net_revenue, aov,
-- repurchase_rate), plus churn_rate for the stages it is defined on (new, active) and
-- every quadrant, and dormant_reactivation_rate for dormant and every quadrant.

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

memberships as (
    select
        customer_months.*,
        'all' as segment_type,
        'all' as segment
    from customer_months

    union all

    select
        customer_months.*,
        'vip' as segment_type,
        'vip' as segment
    from customer_months
    where is_vip_at_end

    union all

    select
        customer_months.*,
        'lifecycle_stage' as segment_type,
        lifecycle_stage_at_start as segment
    from customer_months

    union all

    select
        customer_months.*,
        'quadrant' as segment_type,
        quadrants.quadrant as segment
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
        count(case when is_purchasing then 1 end) as purchasing_customers,
        count(case when is_new_in_month then 1 end) as new_customers,
        count(case when is_active_at_end then 1 end) as active_customers,
        sum(orders_in_month) as customer_orders,
        sum(net_revenue_in_month) as customer_net_revenue,
        count(case when is_purchasing and orders_lifetime_at_end >= 2 then 1 end) as returning_customers,
        count(case when is_active_at_start then 1 end) as active_at_start,
        count(case when is_active_at_start and not is_active_at_end then 1 end) as churned_customers,
        count(case when is_dormant_at_start then 1 end) as dormant_at_start,
        count(case when is_dormant_at_start and is_purchasing then 1 end) as reactivated_customers,
        count(case when is_vip_at_end and is_purchasing then 1 end) as vip_purchasing_customers,
        count(case when is_vip_at_end and is_purchasing and orders_lifetime_at_end >= 2 then 1 end)
            as vip_returning_customers
    from memberships
    group by month, segment_type, segment
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

unpivoted as (
    {%- set kpis = [
        ('purchasing_customers', 'purchasing_customers', 'null', none),
        ('new_customers', 'new_customers', 'null', none),
        ('active_customers', 'active_customers', 'null', none),
        ('orders', 'orders', 'null', none),
        ('net_revenue', 'net_revenue', 'null', none),
        ('aov', 'net_revenue', 'orders', none),
        ('repurchase_rate', 'returning_customers', 'purchasing_customers', none),
        ('returning_customer_rate', 'returning_customers', 'purchasing_customers', none),
        ('churn_rate', 'churned_customers', 'active_at_start',
            "segment_type in ('all', 'quadrant') or segment in ('new', 'active')"),
        ('dormant_reactivation_rate', 'reactivated_customers', 'dormant_at_start',
            "segment_type in ('all', 'quadrant') or segment = 'dormant'"),
        ('vip_customers', 'vip_purchasing_customers', 'null', "segment_type = 'all'")
    ] %}
    {%- for kpi, numerator, denominator, condition in kpis %}
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
    {%- if condition %}
    where {{ condition }}
    {%- endif %}
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
