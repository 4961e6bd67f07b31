-- Customer retention by cohort (docs/warehouse.md "Cohorts"): a cohort is the customers
-- whose first order (not cancelled, business date) falls in a month, split by the channel
-- of that first order, plus a row 'all' over every channel. For each month since the first
-- order, from 0 to var cohort_max_months and never after the month of D: the cohort's
-- size, the customers ordering in that month, their share, and the cohort's net revenue
-- (that month's and cumulative, in total and per customer of the cohort).

with

fct_orders as (
    select * from {{ ref('fct_orders') }}
    where
        customer_id is not null
        and not is_cancelled
        and order_date <= {{ as_of_date() }}
),

ranked_orders as (
    select
        customer_id,
        order_date,
        channel,
        row_number() over (
            partition by customer_id
            order by order_date asc, ordered_at asc nulls last, order_id asc
        ) as order_rank
    from fct_orders
),

cohort_members as (
    -- every customer in the cohort of her first order's month, once under the channel of
    -- that order and once under 'all'
    select
        customer_id,
        {{ month_start('order_date') }} as cohort_month,
        coalesce(channel, 'unknown') as first_order_channel
    from ranked_orders
    where order_rank = 1
    union all
    select
        customer_id,
        {{ month_start('order_date') }} as cohort_month,
        'all' as first_order_channel
    from ranked_orders
    where order_rank = 1
),

customer_months as (
    select
        customer_id,
        {{ month_start('order_date') }} as order_month,
        count(*) as orders,
        sum(net_revenue) as net_revenue
    from fct_orders
    group by customer_id, {{ month_start('order_date') }}
),

cohort_sizes as (
    select
        cohort_month,
        first_order_channel,
        count(*) as cohort_customers
    from cohort_members
    group by cohort_month, first_order_channel
),

cohort_spine as (
    -- months 0 .. cohort_max_months after the cohort month, up to the month of D
    select
        cohort_sizes.cohort_month,
        cohort_sizes.first_order_channel,
        cohort_sizes.cohort_customers,
        spine.month as activity_month
    from cohort_sizes
    {{ month_spine_join(
        'cohort_sizes.cohort_month',
        'least(' ~ add_months('cohort_sizes.cohort_month', var('cohort_max_months')) ~ ', ' ~ as_of_date() ~ ')',
        'spine'
    ) }}
),

cohort_activity as (
    select
        cohort_members.cohort_month,
        cohort_members.first_order_channel,
        customer_months.order_month as activity_month,
        count(distinct cohort_members.customer_id) as active_customers,
        sum(customer_months.orders) as orders,
        sum(customer_months.net_revenue) as net_revenue
    from cohort_members
    inner join customer_months
        on cohort_members.customer_id = customer_months.customer_id
    group by
        cohort_members.cohort_month,
        cohort_members.first_order_channel,
        customer_months.order_month
),

cohort_months as (
    select
        cohort_spine.cohort_month,
        cohort_spine.first_order_channel,
        cohort_spine.activity_month,
        cohort_spine.cohort_customers,
        coalesce(cohort_activity.active_customers, 0) as active_customers,
        coalesce(cohort_activity.orders, 0) as orders,
        coalesce(cohort_activity.net_revenue, 0) as net_revenue,
        sum(coalesce(cohort_activity.net_revenue, 0)) over (
            partition by cohort_spine.cohort_month, cohort_spine.first_order_channel
            order by cohort_spine.activity_month
            rows between unbounded preceding and current row
        ) as cumulative_net_revenue
    from cohort_spine
    left join cohort_activity
        on cohort_spine.cohort_month = cohort_activity.cohort_month
            and cohort_spine.first_order_channel = cohort_activity.first_order_channel
            and cohort_spine.activity_month = cohort_activity.activity_month
),

final as (
    select
        cast(concat(
            {{ month_label('cohort_month') }}, '|', first_order_channel, '|',
            cast({{ months_between('cohort_month', 'activity_month') }} as string)
        ) as string) as cohort_month_id,
        cast(cohort_month as date) as cohort_month,
        cast(first_order_channel as string) as first_order_channel,
        cast({{ months_between('cohort_month', 'activity_month') }} as integer) as months_since_first,
        cast(activity_month as date) as activity_month,
        {{ month_end('activity_month') }} <= {{ as_of_date() }} as is_month_complete,
        cast(cohort_customers as integer) as cohort_customers,
        cast(active_customers as integer) as active_customers,
        {{ safe_ratio('active_customers', 'cohort_customers') }} as active_share,
        cast(orders as integer) as orders,
        cast(net_revenue as decimal(18, 2)) as net_revenue,
        cast(cumulative_net_revenue as decimal(18, 2)) as cumulative_net_revenue,
        cast(
            {{ safe_ratio('cumulative_net_revenue', 'cohort_customers') }} as decimal(18, 2)
        ) as cumulative_net_revenue_per_customer,
        cast({{ as_of_date() }} as date) as as_of_date
    from cohort_months
)

select * from final
