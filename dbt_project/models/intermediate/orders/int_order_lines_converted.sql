{{ config(materialized='view') }}

-- A view: its two readers, fct_order_lines and fct_orders, are incremental and read only
-- the lines of their window; a table rewrote every line of history each build
-- (docs/performance.md).

with

order_lines as (
    -- the buyer's contact fields stay in staging (the restricted store): this view lives
    -- in the warehouse file, which holds no clear personal data
    select {{ star_except(['buyer_name', 'buyer_phone', 'buyer_email']) }}
    from {{ ref('stg_raw__orders') }}
),

currency_rates as (
    select * from {{ ref('currency_rates') }}
),

reporting_rate as (
    select rate_to_cny as reporting_rate_to_cny
    from currency_rates
    where currency = '{{ var("reporting_currency") }}'
),

converted as (
    select
        order_lines.*,
        cast(currency_rates.rate_to_cny / reporting_rate.reporting_rate_to_cny as decimal(18, 6))
            as fx_rate_to_reporting,
        cast(order_lines.quantity * order_lines.unit_price as decimal(18, 2)) as gross_amount_local,
        cast(
            order_lines.quantity * order_lines.unit_price
            - order_lines.discount_amount
            - order_lines.refunded_amount
            as decimal(18, 2)
        ) as net_revenue_local
    from order_lines
    left join currency_rates
        on order_lines.currency = currency_rates.currency
    cross join reporting_rate
),

final as (
    select
        *,
        cast(round(gross_amount_local * fx_rate_to_reporting, 2) as decimal(18, 2)) as gross_amount,
        cast(round(discount_amount * fx_rate_to_reporting, 2) as decimal(18, 2)) as discount_amount_reporting,
        cast(round(refunded_amount * fx_rate_to_reporting, 2) as decimal(18, 2)) as refunded_amount_reporting,
        cast(round(net_revenue_local * fx_rate_to_reporting, 2) as decimal(18, 2)) as net_revenue
    from converted
)

select * from final
