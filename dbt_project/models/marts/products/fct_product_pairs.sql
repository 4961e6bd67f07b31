-- Products bought together (docs/warehouse.md "Products"): association rules over order
-- baskets. A basket is an order not cancelled dated within var product_pair_window_days
-- before D, holding the distinct products of its lines not cancelled. One row per ordered
-- pair (product -> paired product) found together in at least var
-- product_pair_min_baskets baskets:
--   support    = baskets with both / baskets
--   confidence = baskets with both / baskets with the product (P(paired | product))
--   lift       = confidence / (baskets with the paired product / baskets)
-- and the pair's rank among the pairs of the product's category (lift, then baskets with
-- both, then product ids): the top cross-sell candidates per category.

with

fct_order_lines as (
    select * from {{ ref('fct_order_lines') }}
    where
        product_id is not null
        and not is_cancelled
        and order_date <= {{ as_of_date() }}
        and order_date >= {{ add_days(as_of_date(), -var('product_pair_window_days')) }}
),

dim_products as (
    select * from {{ ref('dim_products') }}
),

basket_products as (
    select distinct
        order_id,
        product_id
    from fct_order_lines
),

basket_count as (
    select count(distinct order_id) as baskets from basket_products
),

product_baskets as (
    select
        product_id,
        count(*) as product_baskets
    from basket_products
    group by product_id
),

pair_baskets as (
    select
        basket_products.product_id,
        paired.product_id as paired_product_id,
        count(*) as pair_baskets
    from basket_products
    inner join basket_products as paired
        on basket_products.order_id = paired.order_id
            and basket_products.product_id != paired.product_id
    group by basket_products.product_id, paired.product_id
    having count(*) >= {{ var('product_pair_min_baskets') }}
),

measured as (
    select
        pair_baskets.product_id,
        pair_baskets.paired_product_id,
        basket_count.baskets,
        product_baskets.product_baskets,
        paired_baskets.product_baskets as paired_product_baskets,
        pair_baskets.pair_baskets,
        {{ safe_ratio('pair_baskets.pair_baskets', 'basket_count.baskets') }} as support,  -- noqa: RF04
        {{ safe_ratio('pair_baskets.pair_baskets', 'product_baskets.product_baskets') }} as confidence,
        {{ safe_ratio(
            'pair_baskets.pair_baskets * basket_count.baskets',
            'product_baskets.product_baskets * paired_baskets.product_baskets'
        ) }} as lift
    from pair_baskets
    cross join basket_count
    inner join product_baskets
        on pair_baskets.product_id = product_baskets.product_id
    inner join product_baskets as paired_baskets
        on pair_baskets.paired_product_id = paired_baskets.product_id
),

ranked as (
    select
        measured.*,
        dim_products.product_name,
        coalesce(dim_products.product_category, 'unknown') as product_category,
        paired_products.product_name as paired_product_name,
        coalesce(paired_products.product_category, 'unknown') as paired_product_category,
        row_number() over (
            partition by coalesce(dim_products.product_category, 'unknown')
            order by
                measured.lift desc,
                measured.pair_baskets desc,
                measured.product_id asc,
                measured.paired_product_id asc
        ) as category_pair_rank
    from measured
    left join dim_products
        on measured.product_id = dim_products.product_id
    left join dim_products as paired_products
        on measured.paired_product_id = paired_products.product_id
),

final as (
    select
        cast(concat(product_id, '|', paired_product_id) as string) as product_pair_id,
        cast(product_id as string) as product_id,
        cast(product_name as string) as product_name,
        cast(product_category as string) as product_category,
        cast(paired_product_id as string) as paired_product_id,
        cast(paired_product_name as string) as paired_product_name,
        cast(paired_product_category as string) as paired_product_category,
        cast(baskets as integer) as baskets,
        cast(product_baskets as integer) as product_baskets,
        cast(paired_product_baskets as integer) as paired_product_baskets,
        cast(pair_baskets as integer) as pair_baskets,
        support,
        confidence,
        lift,
        cast(category_pair_rank as integer) as category_pair_rank,
        cast({{ add_days(as_of_date(), -var('product_pair_window_days')) }} as date) as window_start_date,
        cast({{ as_of_date() }} as date) as as_of_date
    from ranked
)

select * from final
