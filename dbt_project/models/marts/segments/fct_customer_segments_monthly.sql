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

-- Segment history (docs/warehouse.md, "Segment history"): one row per customer and
-- complete month M (end(M) = the month's last day <= D), from the month of the customer's
-- first order, with the customer's segments as of end(M), computed as dim_customers
-- computes them as of D:
--   lifecycle_stage  int_customer_months.lifecycle_stage_at_end (macro lifecycle_stage)
--   is_vip           int_customer_months.is_vip_at_end (net revenue in [end(M) - 364, end(M)])
--   rfm_segment      R and F scores as of end(M) (macro rfm_score) ranked among the
--                    customers with an order on or before end(M), the seed rfm_segment_map
--   quadrant         the quadrant the build as of D = end(M) computed
--                    (int_customers_quadrant_assigned); the CLV scores behind "high
--                    potential" exist only as of the night they were computed, so a month's
--                    quadrant is the one of the night of its last day, kept as stored by the
--                    later nights; NULL for a month no build as of its last day computed
--                    (months before the first night, a --full-refresh as of a later D)
-- The running month is not stored (dim_customers holds the segments as of D).
-- Incremental by month like int_customer_months: a night recomputes the complete months from
-- recomputed_months_from() (its cutoff, or the first month rows delivered or records moved
-- to another customer since can change) and leaves older months as stored.

with

customer_months as (
    select * from {{ ref('int_customer_months') }}
),

kpi_months as (
    select * from {{ ref('int_kpi_months') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
    where customer_id is not null and not is_cancelled
),

rfm_segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

quadrants as (
    select * from {{ ref('int_customers_quadrant_assigned') }}
),

months as (
    select
        month,
        end_date
    from kpi_months
    where
        is_complete
    {% if is_incremental() %}
    -- the months late rows or moved records can change; every month when no build
    -- of this model is recorded
    and (
        month >= {{ recomputed_months_from() }}
        or {{ last_built_as_of('fct_customer_segments_monthly') }} is null
    )
    {% endif %}
),

states as (
    select
        customer_months.customer_id,
        customer_months.month,
        months.end_date,
        customer_months.first_order_date,
        customer_months.last_order_date_at_end,
        customer_months.orders_lifetime_at_end,
        customer_months.net_revenue_365d_at_end,
        customer_months.lifecycle_stage_at_end as lifecycle_stage,
        customer_months.is_vip_at_end as is_vip
    from customer_months
    inner join months
        on customer_months.month = months.month
),

orders_365d as (
    -- orders dated in [end(M) - 364, end(M)]: the F of RFM as of end(M)
    select
        months.month,
        orders.customer_id,
        count(*) as orders_365d_at_end
    from orders
    inner join months
        on orders.order_date <= months.end_date
            and orders.order_date >= {{ add_days('months.end_date', -var('revenue_window_days')) }}
    group by months.month, orders.customer_id
),

measured as (
    select
        states.*,
        coalesce(orders_365d.orders_365d_at_end, 0) as orders_365d_at_end,
        {{ days_between('states.last_order_date_at_end', 'states.end_date') }} as recency_days_at_end
    from states
    left join orders_365d
        on states.customer_id = orders_365d.customer_id
            and states.month = orders_365d.month
),

scored as (
    select
        *,
        {{ rfm_score('recency_days_at_end desc', 'month') }} as r_score,
        {{ rfm_score('orders_365d_at_end asc', 'month') }} as f_score
    from measured
),

segmented as (
    select
        scored.*,
        rfm_segment_map.segment as rfm_segment
    from scored
    left join rfm_segment_map
        on scored.r_score between rfm_segment_map.r_min and rfm_segment_map.r_max
            and scored.f_score between rfm_segment_map.f_min and rfm_segment_map.f_max
    qualify
        row_number() over (
            partition by scored.customer_id, scored.month
            order by rfm_segment_map.priority
        ) = 1
),

{% if is_incremental() %}
stored_quadrants as (
    select
        customer_id,
        month,
        quadrant
    from {{ this }}
),
{% endif %}

final as (
    select
        segmented.customer_id || '|' || {{ month_label('segmented.month') }} as customer_month_id,
        segmented.customer_id,
        segmented.month,
        {{ month_label('segmented.month') }} as month_label,
        segmented.end_date,
        segmented.first_order_date,
        segmented.last_order_date_at_end as last_order_date,
        cast(segmented.orders_lifetime_at_end as integer) as orders_lifetime,
        cast(segmented.orders_365d_at_end as integer) as orders_365d,
        cast(segmented.net_revenue_365d_at_end as decimal(18, 2)) as net_revenue_365d,
        cast(segmented.recency_days_at_end as integer) as recency_days,
        segmented.lifecycle_stage,
        segmented.r_score,
        segmented.f_score,
        segmented.rfm_segment,
        case
            when segmented.end_date = {{ as_of_date() }} then quadrants.quadrant
            {% if is_incremental() %}
            else stored_quadrants.quadrant
            {% endif %}
        end as quadrant,
        segmented.is_vip
    from segmented
    left join quadrants
        on segmented.customer_id = quadrants.customer_id
    {% if is_incremental() %}
    left join stored_quadrants
        on segmented.customer_id = stored_quadrants.customer_id
            and segmented.month = stored_quadrants.month
    {% endif %}
)

select * from final
