-- One row per product category and month with sales, up to the month of D: net revenue,
-- buyers (resolved customers), orders and units over the order lines not cancelled
-- (business date). An order spanning two categories counts once in each.

with

fct_order_lines as (
    select * from {{ ref('fct_order_lines') }}
    where
        not is_cancelled
        and order_date <= {{ as_of_date() }}
),

category_months as (
    select
        coalesce(product_category, 'unknown') as product_category,
        {{ month_start('order_date') }} as month,
        sum(net_revenue) as net_revenue,
        count(distinct customer_id) as buyers,
        count(distinct order_id) as orders,
        sum(quantity) as units_sold
    from fct_order_lines
    group by coalesce(product_category, 'unknown'), {{ month_start('order_date') }}
),

final as (
    select
        cast(concat({{ month_label('month') }}, '|', product_category) as string) as category_month_id,
        cast(product_category as string) as product_category,
        cast(month as date) as month,
        {{ month_end('month') }} <= {{ as_of_date() }} as is_month_complete,
        cast(net_revenue as decimal(18, 2)) as net_revenue,
        cast(buyers as integer) as buyers,
        cast(orders as integer) as orders,
        cast(units_sold as decimal(18, 4)) as units_sold,
        cast({{ safe_ratio('net_revenue', 'orders') }} as decimal(18, 2)) as net_revenue_per_order
    from category_months
)

select * from final
