-- One row per product sold up to D: its latest name and category, the median unit price
-- observed on its order lines (not cancelled, reporting currency: gross amount / quantity)
-- and the price band of that price (var product_price_band_bounds), with what it sold.

{%- set bounds = var('product_price_band_bounds') %}
{#- the band labels: '<b1', 'b1-(b2-1)', ..., 'bn+' -#}
{%- set labels = ['<' ~ bounds[0]] %}
{%- for bound in bounds %}
{%- do labels.append(bound ~ '+' if loop.last else bound ~ '-' ~ (bounds[loop.index] - 1)) %}
{%- endfor %}

with

fct_order_lines as (
    select * from {{ ref('fct_order_lines') }}
    where
        product_id is not null
        and not is_cancelled
        and order_date <= {{ as_of_date() }}
),

products as (
    select
        product_id,
        {{ max_by_known('product_name', 'order_date') }} as product_name,
        {{ max_by_known('product_category', 'order_date') }} as product_category,
        {{ percentile_cont('gross_amount / nullif(quantity, 0)', 0.5) }} as median_unit_price,
        min(order_date) as first_sold_date,
        max(order_date) as last_sold_date,
        count(distinct order_id) as orders,
        sum(quantity) as units_sold,
        sum(net_revenue) as net_revenue
    from fct_order_lines
    group by product_id
),

banded as (
    select
        *,
        case
            {%- for bound in bounds | reverse %}
            when median_unit_price >= {{ bound }} then '{{ labels[bounds | length - loop.index + 1] }}'
            {%- endfor %}
            else '{{ labels[0] }}'
        end as price_band,
        case
            {%- for bound in bounds | reverse %}
            when median_unit_price >= {{ bound }} then {{ bounds | length - loop.index + 1 }}
            {%- endfor %}
            else 0
        end as price_band_rank
    from products
),

final as (
    select
        cast(product_id as string) as product_id,
        cast(product_name as string) as product_name,
        cast(product_category as string) as product_category,
        cast(median_unit_price as decimal(18, 2)) as median_unit_price,
        cast(price_band as string) as price_band,
        cast(price_band_rank as integer) as price_band_rank,
        cast(first_sold_date as date) as first_sold_date,
        cast(last_sold_date as date) as last_sold_date,
        cast(orders as integer) as orders,
        cast(units_sold as decimal(18, 4)) as units_sold,
        cast(net_revenue as decimal(18, 2)) as net_revenue
    from banded
)

select * from final
