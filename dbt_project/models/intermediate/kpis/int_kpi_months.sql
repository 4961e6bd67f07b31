-- The calendar months the KPIs are computed for, from the first month with data to the
-- month of D (metrics.md): start(M) = last day of the previous month; end(M) = last day
-- of M, or D for the running month (is_complete = false: the month is not over; a KPI's
-- month is complete only once its maturity has passed too, fct_kpi_monthly). first_date:
-- the warehouse's first data date, from which a KPI's history is counted (min_history_days).

with

orders as (
    select * from {{ ref('fct_orders') }}
),

service_tickets as (
    select * from {{ ref('fct_service_tickets') }}
),

social_interactions as (
    select * from {{ ref('fct_social_interactions') }}
),

bounds as (
    select least(
        (select min(order_date) from orders),
        (select min(created_date) from service_tickets),
        (select min(occurred_date) from social_interactions),
        {{ as_of_date() }}
    ) as first_date
),

spine as (
    select spine_months.month
    from bounds
    {{ month_spine_join('bounds.first_date', as_of_date(), 'spine_months') }}
),

final as (
    select
        spine.month,
        cast(bounds.first_date as date) as first_date,
        {{ month_label('month') }} as month_label,
        {{ add_days('month', -1) }} as start_date,
        least({{ month_end('month') }}, {{ as_of_date() }}) as end_date,
        {{ month_end('month') }} <= {{ as_of_date() }} as is_complete
    from spine
    cross join bounds
)

select * from final
