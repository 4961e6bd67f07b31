{{ config(materialized='table') }}

-- A table: as a view it was computed again by each of its readers (int_customers_rfm_scored,
-- int_customers_quadrant_assigned, dim_customers) and by each data test of it and of
-- int_customers_rfm_scored, every time over all orders (docs/performance.md).
--
-- Order history of every customer with at least one order, as of D (metrics.md,
-- "Customer state"): first/last order date, orders lifetime and in [D-364, D], net
-- revenue in [D-364, D], recency, VIP flag and lifecycle stage.

with

orders as (
    select * from {{ ref('fct_orders') }}
    where customer_id is not null and not is_cancelled
),

summarised as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) as orders_lifetime,
        count(
            case when order_date >= {{ add_days(as_of_date(), -var('revenue_window_days')) }} then 1 end
        ) as orders_365d,
        coalesce(sum(
            case when order_date >= {{ add_days(as_of_date(), -var('revenue_window_days')) }} then net_revenue end
        ), 0) as net_revenue_365d,
        coalesce(sum(net_revenue), 0) as net_revenue_lifetime
    from orders
    group by customer_id
),

final as (
    select
        *,
        {{ days_between('last_order_date', as_of_date()) }} as recency_days,
        net_revenue_365d >= {{ var('vip_revenue_365d') }} as is_vip,
        {{ lifecycle_stage('first_order_date', 'last_order_date', as_of_date()) }} as lifecycle_stage
    from summarised
)

select * from final
