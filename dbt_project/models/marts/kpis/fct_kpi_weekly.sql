-- The weekly KPIs of the review's weekly section, per ISO week (Monday to Sunday), segment
-- all only, long format (one row per week x kpi), with the monthly definitions on weekly
-- windows (metrics.md): orders and net_revenue of the week's orders; tickets created in
-- the week and their first-response and resolution SLA rates (a ticket whose target has
-- not run out at the end of D is pending, met or not: see int_kpi_service_monthly);
-- csat_avg and csat_satisfied_rate of the surveys answered in the week. end_date is the Sunday, or D for the running week;
-- is_complete: D >= end_date + the KPI's maturity_days (the running week never). As in
-- fct_kpi_monthly, start_date is start(W), the last day of the previous week.
--
-- A table rebuilt whole every night (not incremental): it reads only the facts and the
-- survey events, grouped by week (a few hundred rows), so a full build costs little and
-- is the same as a --full-refresh by construction; late corrections restate the weeks
-- they touch.

{%- set first_response_open = is_sla_window_open('created_at', 'first_response_target_minutes') %}
{%- set resolution_open = is_sla_window_open('created_at', 'resolution_target_minutes') %}

with

orders as (
    select * from {{ ref('fct_orders') }}
),

service_tickets as (
    select * from {{ ref('fct_service_tickets') }}
),

service_events as (
    select * from {{ ref('stg_raw__service_events') }}
),

kpi_months as (
    select * from {{ ref('int_kpi_months') }}
),

kpi_definitions as (
    select * from {{ ref('kpi_definitions') }}
),

weeks as (
    select
        spine_weeks.week,
        least({{ add_days('spine_weeks.week', 6) }}, {{ as_of_date() }}) as end_date,
        {{ add_days('spine_weeks.week', 6) }} <= {{ as_of_date() }} as is_over
    from (select min(first_date) as first_date from kpi_months) as bounds
    {{ week_spine_join('bounds.first_date', as_of_date(), 'spine_weeks') }}
),

weekly_orders as (
    select
        {{ week_start('order_date') }} as week,
        count(*) as orders,
        sum(net_revenue) as net_revenue
    from orders
    where not is_cancelled and order_date <= {{ as_of_date() }}
    group by {{ week_start('order_date') }}
),

weekly_tickets as (
    select
        {{ week_start('created_date') }} as week,
        count(*) as tickets,
        count(case when first_response_sla_status = 'met' and not {{ first_response_open }} then 1 end)
            as first_response_met,
        count(case when not {{ first_response_open }} then 1 end) as first_response_decided,
        count(case when {{ first_response_open }} then 1 end) as first_response_pending,
        count(case when resolution_sla_status = 'met' and not {{ resolution_open }} then 1 end) as resolution_met,
        count(case when not {{ resolution_open }} then 1 end) as resolution_decided,
        count(case when {{ resolution_open }} then 1 end) as resolution_pending
    from service_tickets
    where created_date <= {{ as_of_date() }}
    group by {{ week_start('created_date') }}
),

weekly_surveys as (
    select
        {{ week_start('event_date') }} as week,
        count(*) as surveys,
        sum(csat_score) as csat_total,
        count(case when csat_score >= {{ var('csat_satisfied_score') }} then 1 end) as satisfied_surveys
    from service_events
    where event_type = 'csat' and csat_score is not null and event_date <= {{ as_of_date() }}
    group by {{ week_start('event_date') }}
),

measured as (
    select
        weeks.week,
        weeks.end_date,
        weeks.is_over,
        coalesce(weekly_orders.orders, 0) as orders,
        coalesce(weekly_orders.net_revenue, 0) as net_revenue,
        coalesce(weekly_tickets.tickets, 0) as tickets,
        coalesce(weekly_tickets.first_response_met, 0) as first_response_met,
        coalesce(weekly_tickets.first_response_decided, 0) as first_response_decided,
        coalesce(weekly_tickets.first_response_pending, 0) as first_response_pending,
        coalesce(weekly_tickets.resolution_met, 0) as resolution_met,
        coalesce(weekly_tickets.resolution_decided, 0) as resolution_decided,
        coalesce(weekly_tickets.resolution_pending, 0) as resolution_pending,
        coalesce(weekly_surveys.surveys, 0) as surveys,
        coalesce(weekly_surveys.csat_total, 0) as csat_total,
        coalesce(weekly_surveys.satisfied_surveys, 0) as satisfied_surveys
    from weeks
    left join weekly_orders
        on weeks.week = weekly_orders.week
    left join weekly_tickets
        on weeks.week = weekly_tickets.week
    left join weekly_surveys
        on weeks.week = weekly_surveys.week
),

unpivoted as (
    {%- set kpis = [
        ('orders', 'orders', 'null', 'null'),
        ('net_revenue', 'net_revenue', 'null', 'null'),
        ('tickets', 'tickets', 'null', 'null'),
        ('first_response_sla_rate', 'first_response_met', 'first_response_decided', 'first_response_pending'),
        ('resolution_sla_rate', 'resolution_met', 'resolution_decided', 'resolution_pending'),
        ('csat_avg', 'csat_total', 'surveys', 'null'),
        ('csat_satisfied_rate', 'satisfied_surveys', 'surveys', 'null'),
    ] %}
    {%- for kpi, numerator, denominator, pending in kpis %}
    select
        week,
        end_date,
        is_over,
        '{{ kpi }}' as kpi,
        {{ numerator }} as numerator,
        {{ denominator }} as denominator,
        {% if denominator == 'null' -%}
        {{ numerator }}
        {%- else -%}
        {{ safe_ratio(numerator, denominator) }}
        {%- endif %} as value,
        {{ pending }} as pending
    from measured
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

final as (
    select
        cast({{ week_label('unpivoted.week') }} || '|' || unpivoted.kpi as string) as kpi_weekly_id,
        cast(unpivoted.week as date) as week,
        cast({{ week_label('unpivoted.week') }} as string) as week_label,
        cast({{ add_days('unpivoted.week', -1) }} as date) as start_date,
        cast(unpivoted.end_date as date) as end_date,
        cast(
            unpivoted.is_over
            and {{ add_days('unpivoted.end_date', 'coalesce(kpi_definitions.maturity_days, 0)') }} <= {{ as_of_date() }}
            as boolean
        ) as is_complete,
        cast(unpivoted.kpi as string) as kpi,
        -- an amount's unit is the reporting currency (seed unit `currency`)
        cast(
            case
                when kpi_definitions.unit = 'currency' then '{{ var("reporting_currency") }}'
                else kpi_definitions.unit
            end as string
        ) as unit,
        cast(unpivoted.value as double) as value,
        cast(unpivoted.numerator as double) as numerator,
        cast(unpivoted.denominator as double) as denominator,
        cast(kpi_definitions.maturity_days as integer) as maturity_days,
        cast(
            case when coalesce(kpi_definitions.maturity_days, 0) > 0 then coalesce(unpivoted.pending, 0) end
            as double
        ) as pending,
        cast({{ as_of_date() }} as date) as computed_as_of_date
    from unpivoted
    left join kpi_definitions
        on unpivoted.kpi = kpi_definitions.kpi
)

select * from final
