{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='order_id',
        on_schema_change='append_new_columns',
        post_hook="{{ keep_written_keys() }}",
    )
}}

-- depends_on: {{ ref('int_source_records_logged') }} (the customer-change log, read by
-- keys_with_changed_customer in incremental runs), {{ ref('stg_raw__orders') }} (the lines
-- delivered since the last build, read by delivered_since_build)

-- One row per order. An order is cancelled when all its lines are; amounts sum the lines
-- that are not cancelled (metrics.md: net revenue = sum of quantity x unit_price -
-- discount - refunded, in the reporting currency).

with

{% if is_incremental() %}
-- orders whose customer changed, and orders with a line delivered since the last build
-- (a late line, a refund, a status change), whatever their date
changed_orders as (
    {{ keys_with_changed_customer('orders') }}
    union
    select delivered.order_id from ({{ delivered_since_build('stg_raw__orders') }}) as delivered
),
{% endif %}

order_lines as (
    select * from {{ ref('int_order_lines_converted') }}
    {% if is_incremental() %}
    -- only the orders the filter below can keep: an order dated from the cutoff has a
    -- line dated from it (all lines of these orders are read, so their sums are whole)
    where
        order_id in (
            select recent_lines.order_id from {{ ref('int_order_lines_converted') }} as recent_lines
            where recent_lines.order_date >= {{ incremental_cutoff_date() }}
        )
        or order_id in (select changed_orders.record_key from changed_orders)
    {% endif %}
),

source_records_resolved as (
    select * from {{ ref('int_source_records_resolved') }}
),

orders as (
    select
        order_id,
        min(source_system) as source_system,
        min(source_order_id) as source_order_id,
        min(ordered_at) as ordered_at,
        min(order_date) as order_date,
        min(channel) as channel,
        bool_and(is_cancelled) as is_cancelled,
        -- order status: the lines' status of highest precedence
        -- (cancelled only when every line is cancelled)
        case
            when bool_and(is_cancelled) then 'cancelled'
            when bool_or(status = 'refunded') then 'refunded'
            when bool_or(status = 'completed') then 'completed'
            when bool_or(status = 'shipped') then 'shipped'
            when bool_or(status = 'paid') then 'paid'
            else min(status)
        end as status,
        count(*) as line_count,
        min(currency) as currency,
        sum(case when not is_cancelled then quantity else 0 end) as items,
        sum(case when not is_cancelled then gross_amount else 0 end) as gross_amount,
        sum(case when not is_cancelled then discount_amount_reporting else 0 end) as discount_amount,
        sum(case when not is_cancelled then refunded_amount_reporting else 0 end) as refunded_amount,
        sum(case when not is_cancelled then net_revenue else 0 end) as net_revenue,
        max(delivery_date) as last_delivery_date
    from order_lines
    group by order_id
),

final as (
    select
        cast(orders.order_id as string) as order_id,
        cast(orders.source_system as string) as source_system,
        cast(orders.source_order_id as string) as source_order_id,
        cast(source_records_resolved.customer_id as string) as customer_id,
        source_records_resolved.customer_id is not null as has_customer,
        cast(orders.ordered_at as timestamp) as ordered_at,
        cast({{ to_business_timestamp('orders.ordered_at') }} as timestamp) as ordered_at_local,
        cast(orders.order_date as date) as order_date,
        cast(orders.channel as string) as channel,
        cast(orders.status as string) as status,
        cast(orders.is_cancelled as boolean) as is_cancelled,
        cast(orders.line_count as integer) as line_count,
        cast(orders.items as decimal(18, 4)) as items,
        cast(orders.currency as string) as currency,
        cast(orders.gross_amount as decimal(18, 2)) as gross_amount,
        cast(orders.discount_amount as decimal(18, 2)) as discount_amount,
        cast(orders.refunded_amount as decimal(18, 2)) as refunded_amount,
        cast(orders.net_revenue as decimal(18, 2)) as net_revenue,
        cast(orders.last_delivery_date as date) as last_delivery_date
    from orders
    left join source_records_resolved
        on orders.order_id = source_records_resolved.record_key
            and source_records_resolved.entity = 'orders'
    {% if is_incremental() %}
    where
        orders.order_date >= {{ incremental_cutoff_date() }}
        or orders.order_id in (select changed_orders.record_key from changed_orders)
    {% endif %}
)

select * from final
