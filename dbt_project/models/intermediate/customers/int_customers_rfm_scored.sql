{{ config(materialized='table') }}

-- A table: as a view its three data tests each ranked every customer again (and summarised
-- their orders again) before dim_customers did (docs/performance.md).
--
-- RFM scores of the customers with at least one order, as of D (metrics.md, "RFM"):
--   score = 1 + floor(5 x (rank() - 1) / n), ties share the lowest rank
--   r: rank by recency_days descending (most recent -> 5); f: orders_365d; m: net_revenue_365d
-- and rfm_segment from the seed rfm_segment_map (r/f ranges, first match by priority).

with

customers as (
    select * from {{ ref('int_customers_order_summarised') }}
),

rfm_segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

scored as (
    select
        customer_id,
        recency_days,
        orders_365d,
        net_revenue_365d,
        cast(1 + floor(
            {{ var('rfm_score_buckets') }} * (rank() over (order by recency_days desc) - 1)
            / count(*) over ()
        ) as integer) as r_score,
        cast(1 + floor(
            {{ var('rfm_score_buckets') }} * (rank() over (order by orders_365d asc) - 1)
            / count(*) over ()
        ) as integer) as f_score,
        cast(1 + floor(
            {{ var('rfm_score_buckets') }} * (rank() over (order by net_revenue_365d asc) - 1)
            / count(*) over ()
        ) as integer) as m_score
    from customers
),

segmented as (
    select
        scored.*,
        rfm_segment_map.segment as rfm_segment
    from scored
    left join rfm_segment_map
        on scored.r_score between rfm_segment_map.r_min and rfm_segment_map.r_max
            and scored.f_score between rfm_segment_map.f_min and rfm_segment_map.f_max
    qualify row_number() over (partition by scored.customer_id order by rfm_segment_map.priority) = 1
)

select * from segmented
