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

-- Every KPI of metrics.md per calendar month and segment, long format (one row per
-- month x segment x kpi). A nightly run recomputes the months from the month that
-- contains D - var late_arrival_lookback_days - the largest maturity_days (a month whose
-- KPIs are still maturing changes with time alone, so it is recomputed every night until
-- complete), or the earliest month that rows delivered (or moved to another customer)
-- since its last build can change, whatever their date (macro recomputed_months_from);
-- the other months stay as they were published (docs/warehouse.md, "As-of rules and late
-- arrivals", "Maturity and pending events").
--
-- Per row (metrics.md "Maturity", "Segments"):
--   is_complete: D >= end of M + the KPI's maturity_days (the running month never);
--   pending: events of M whose outcome window is still open at the end of D (0 once the
--     month is complete; NULL for KPIs without maturity);
--   is_small_base: a denominator below var min_segment_base;
--   has_enough_history: the first data date lies min_history_days or more before M;
--   segment_as_of: none (all), start (flow KPI per segment), end (point-in-time KPI),
--     as_of_date (quadrant).
--
-- Quadrant segments (segment_type 'quadrant') exist only as of D (the CLV scores), so
-- they are computed for the month of D only. A run that also recomputes the previous
-- month (the first nights of a month, within the lookback) keeps that month's quadrant
-- rows as the run for D = end(M) published them; so with nightly runs every month has
-- quadrant rows as of its last day, while a --full-refresh (or a backfill from scratch)
-- has them for the month of D only. (Quadrant KPIs have no maturity: a quadrant row is
-- complete when its month is over, which only the run for D = end(M) publishes.)

with

months as (
    select * from {{ ref('int_kpi_months') }}
),

kpi_definitions as (
    select * from {{ ref('kpi_definitions') }}
),

customer_kpis as (
    select * from {{ ref('int_kpi_customers_monthly') }}
),

profile_kpis as (
    select * from {{ ref('int_kpi_profiles_monthly') }}
),

service_kpis as (
    select * from {{ ref('int_kpi_service_monthly') }}
),

social_kpis as (
    select * from {{ ref('int_kpi_social_monthly') }}
),

service_operations_kpis as (
    select * from {{ ref('int_kpi_service_operations_monthly') }}
),

-- the building blocks' columns by name: customer and profile KPIs have no pending events
unioned as (
    select
        month,
        segment_type,
        segment,
        kpi,
        value,
        numerator,
        denominator,
        cast(null as double) as pending,
        false as is_ticket_segment
    from customer_kpis
    union all
    select
        month,
        segment_type,
        segment,
        kpi,
        value,
        numerator,
        denominator,
        cast(null as double) as pending,
        false as is_ticket_segment
    from profile_kpis
    union all
    select
        month,
        segment_type,
        segment,
        kpi,
        value,
        numerator,
        denominator,
        pending,
        segment_type != 'all' as is_ticket_segment
    from service_kpis
    union all
    select
        month,
        segment_type,
        segment,
        kpi,
        value,
        numerator,
        denominator,
        pending,
        false as is_ticket_segment
    from social_kpis
    union all
    select
        month,
        segment_type,
        segment,
        kpi,
        value,
        numerator,
        denominator,
        pending,
        segment_type != 'all' as is_ticket_segment
    from service_operations_kpis
),

final as (
    select
        cast(months.month_label || '|' || unioned.segment || '|' || unioned.kpi as string) as kpi_monthly_id,
        cast(months.month as date) as month,
        cast(months.month_label as string) as month_label,
        cast(months.start_date as date) as start_date,
        cast(months.end_date as date) as end_date,
        cast(
            months.is_complete
            and {{ add_days('months.end_date', 'coalesce(kpi_definitions.maturity_days, 0)') }} <= {{ as_of_date() }}
            as boolean
        ) as is_complete,
        cast(unioned.segment_type as string) as segment_type,
        cast(unioned.segment as string) as segment,
        cast(unioned.kpi as string) as kpi,
        cast(kpi_definitions.kpi_type as string) as kpi_type,
        -- an amount's unit is the reporting currency (seed unit `currency`)
        cast(
            case
                when kpi_definitions.unit = 'currency' then '{{ var("reporting_currency") }}'
                else kpi_definitions.unit
            end as string
        ) as unit,
        cast(unioned.value as double) as value,
        cast(unioned.numerator as double) as numerator,
        cast(unioned.denominator as double) as denominator,
        cast({{ as_of_date() }} as date) as computed_as_of_date,
        cast(kpi_definitions.maturity_days as integer) as maturity_days,
        cast(
            case when coalesce(kpi_definitions.maturity_days, 0) > 0 then coalesce(unioned.pending, 0) end
            as double
        ) as pending,
        cast(coalesce(unioned.denominator < {{ var('min_segment_base') }}, false) as boolean) as is_small_base,
        cast(
            months.first_date <= {{ add_days('months.month', '-coalesce(kpi_definitions.min_history_days, 0)') }}
            as boolean
        ) as has_enough_history,
        cast(
            case
                when unioned.segment_type = 'all' then 'none'
                when unioned.segment_type = 'quadrant' then 'as_of_date'
                -- service KPIs per ticket channel, category or priority: the ticket's own
                -- attribute, fixed at its creation
                when unioned.is_ticket_segment then 'event'
                when kpi_definitions.kpi_type = 'point_in_time' then 'end'
                else 'start'
            end as string
        ) as segment_as_of
    from unioned
    inner join months
        on unioned.month = months.month
    left join kpi_definitions
        on unioned.kpi = kpi_definitions.kpi
    {% if is_incremental() %}
    where months.month >= {{ recomputed_months_from(maturity=true) }}
    {% endif %}
),

kept_quadrant_rows as (
    -- quadrant rows of the recomputed months before the month of D, as published by the
    -- run for D = end(M) (the month over: end_date is its last day); rows of a run in the
    -- middle of M (followed by a gap) are dropped
    {% if is_incremental() %}
    select
        kpi_monthly_id,
        month,
        month_label,
        start_date,
        end_date,
        is_complete,
        segment_type,
        segment,
        kpi,
        kpi_type,
        unit,
        value,
        numerator,
        denominator,
        computed_as_of_date,
        maturity_days,
        pending,
        is_small_base,
        has_enough_history,
        segment_as_of
    from {{ this }}
    where
        segment_type = 'quadrant'
        and end_date = {{ month_end('month') }}
        and month >= {{ recomputed_months_from(maturity=true) }}
        and month < {{ month_start(as_of_date()) }}
    {% else %}
    select * from final
    where false
    {% endif %}
)

select * from final
union all
select * from kept_quadrant_rows
