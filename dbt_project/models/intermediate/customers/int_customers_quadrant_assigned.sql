{{ config(materialized='table') }}

-- The value x potential quadrant of every resolved customer as of D (metrics.md, "Value x
-- potential quadrant"), the single implementation read by dim_customers and by the
-- quadrant segments of fct_kpi_monthly (via int_kpi_customers_monthly):
--   high value      net_revenue_365d > 0 and percent_rank() >= 0.8 among the customers
--                   with net_revenue_365d > 0
--   high potential  engagement_90d >= 3, or the CLV model's expected_purchases_90d >= 1;
--                   a customer without CLV scores (not scored, or the placeholder table
--                   before the CLV asset ran) is judged on engagement alone

with

customers_resolved as (
    select * from {{ ref('int_customers_resolved') }}
),

order_summaries as (
    select * from {{ ref('int_customers_order_summarised') }}
),

engagement as (
    select * from {{ ref('int_customers_engagement_counted') }}
),

clv_scores as (
    select * from {{ ref('stg_clv__customer_scores') }}
),

customers as (
    select distinct customer_id
    from customers_resolved
    where customer_id is not null
),

value_ranks as (
    select
        customer_id,
        percent_rank() over (order by net_revenue_365d) as net_revenue_365d_percent_rank
    from order_summaries
    where net_revenue_365d > 0
),

joined as (
    select
        customers.customer_id,
        coalesce(order_summaries.net_revenue_365d, 0) as net_revenue_365d,
        value_ranks.net_revenue_365d_percent_rank,
        coalesce(engagement.engagement_90d, 0) as engagement_90d,
        clv_scores.expected_purchases_90d,
        coalesce(
            value_ranks.net_revenue_365d_percent_rank >= {{ var('high_value_percent_rank') }}, false
        ) as is_high_value,
        coalesce(engagement.engagement_90d, 0) >= {{ var('high_potential_engagement_90d') }}
        or coalesce(
            clv_scores.expected_purchases_90d >= {{ var('high_potential_expected_purchases_90d') }}, false
        ) as is_high_potential
    from customers
    left join order_summaries on customers.customer_id = order_summaries.customer_id
    left join engagement on customers.customer_id = engagement.customer_id
    left join value_ranks on customers.customer_id = value_ranks.customer_id
    left join clv_scores on customers.customer_id = clv_scores.customer_id
),

final as (
    select
        *,
        case
            when is_high_value and is_high_potential then 'high_value_high_potential'
            when is_high_value then 'high_value_low_potential'
            when is_high_potential then 'low_value_high_potential'
            else 'low_value_low_potential'
        end as quadrant
    from joined
)

select * from final
