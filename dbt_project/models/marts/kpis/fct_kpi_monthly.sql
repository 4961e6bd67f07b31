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
-- contains D - var late_arrival_lookback_days, or the earliest month that rows delivered
-- (or moved to another customer) since its last build can change, whatever their date
-- (macro recomputed_months_from); the other months stay as they were published
-- (docs/warehouse.md, "As-of rules and late arrivals").
--
-- Quadrant segments (segment_type 'quadrant') exist only as of D (the CLV scores), so
-- they are computed for the month of D only. A run that also recomputes the previous
-- month (the first nights of a month, within the lookback) keeps that month's quadrant
-- rows as the run for D = end(M) published them; so with nightly runs every month has
-- quadrant rows as of its last day, while a --full-refresh (or a backfill from scratch)
-- has them for the month of D only.

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

unioned as (
    select * from customer_kpis
    union all
    select * from profile_kpis
    union all
    select * from service_kpis
    union all
    select * from social_kpis
),

final as (
    select
        cast(months.month_label || '|' || unioned.segment || '|' || unioned.kpi as string) as kpi_monthly_id,
        cast(months.month as date) as month,
        cast(months.month_label as string) as month_label,
        cast(months.start_date as date) as start_date,
        cast(months.end_date as date) as end_date,
        cast(months.is_complete as boolean) as is_complete,
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
        cast({{ as_of_date() }} as date) as computed_as_of_date
    from unioned
    inner join months
        on unioned.month = months.month
    left join kpi_definitions
        on unioned.kpi = kpi_definitions.kpi
    {% if is_incremental() %}
    where months.month >= {{ recomputed_months_from() }}
    {% endif %}
),

kept_quadrant_rows as (
    -- quadrant rows of the recomputed months before the month of D, as published by the
    -- run for D = end(M); rows of a run in the middle of M (followed by a gap) are dropped
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
        computed_as_of_date
    from {{ this }}
    where
        segment_type = 'quadrant'
        and is_complete
        and month >= {{ recomputed_months_from() }}
        and month < {{ month_start(as_of_date()) }}
    {% else %}
    select * from final
    where false
    {% endif %}
)

select * from final
union all
select * from kept_quadrant_rows
