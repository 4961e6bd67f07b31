-- The SMART-target review as of D (metrics.md, "SMART targets and the KPI review"): one
-- row per target of the seed kpi_targets.
--   baseline: the KPI in the month baseline_period ('YYYY-MM')
--   current:  flow KPIs: the latest complete month; point-in-time KPIs: as of D
--   target:   absolute, or '+N%' / '-N%' relative to the baseline
--   progress = (current - baseline) / (target - baseline)
--   time_elapsed = (D - start_date) / (due_date - start_date)
--   status: achieved (progress >= 1), on_track (progress >= time_elapsed), at_risk
--     (progress >= 0.7 x time_elapsed), off_track; after the due date only achieved or
--     missed; no_data when the baseline or current value is missing.

with

kpi_targets as (
    select * from {{ ref('stg_targets__kpi_targets') }}
),

kpi_definitions as (
    select * from {{ ref('kpi_definitions') }}
),

kpi_monthly as (
    select * from {{ ref('fct_kpi_monthly') }}
),

latest_complete as (
    select *
    from kpi_monthly
    where is_complete and end_date <= {{ as_of_date() }}
    qualify row_number() over (partition by kpi, segment order by month desc) = 1
),

point_in_time as (
    select *
    from kpi_monthly
    where end_date = {{ as_of_date() }}
),

valued as (
    select
        kpi_targets.*,
        kpi_definitions.kpi_type,
        baseline.value as baseline_value,
        case
            when kpi_definitions.kpi_type = 'point_in_time' then point_in_time.value
            else latest_complete.value
        end as current_value,
        case
            when kpi_definitions.kpi_type = 'point_in_time' then point_in_time.month_label
            else latest_complete.month_label
        end as current_period,
        {{ regex_matches('trim(kpi_targets.target_value)', "'^[+-][0-9.]+%$'") }} as is_relative_target
    from kpi_targets
    left join kpi_definitions
        on kpi_targets.kpi = kpi_definitions.kpi
    left join kpi_monthly as baseline
        on kpi_targets.kpi = baseline.kpi
            and kpi_targets.segment = baseline.segment
            and kpi_targets.baseline_period = baseline.month_label
    left join latest_complete
        on kpi_targets.kpi = latest_complete.kpi
            and kpi_targets.segment = latest_complete.segment
    left join point_in_time
        on kpi_targets.kpi = point_in_time.kpi
            and kpi_targets.segment = point_in_time.segment
),

targeted as (
    select
        *,
        case
            when is_relative_target
                then baseline_value * (1 + cast(replace(trim(target_value), '%', '') as double) / 100.0)
            else try_cast(target_value as double)
        end as target_number
    from valued
),

measured as (
    select
        *,
        (current_value - baseline_value) / nullif(target_number - baseline_value, 0) as progress,
        cast({{ days_between('start_date', as_of_date()) }} as double)
        / nullif({{ days_between('start_date', 'due_date') }}, 0) as time_elapsed
    from targeted
),

final as (
    select
        cast(target_id as string) as target_id,
        cast(kpi as string) as kpi,
        cast(segment as string) as segment,
        cast(kpi_type as string) as kpi_type,
        cast(owner as string) as owner,
        cast(description_en as string) as description,
        cast(description_zh as string) as description_zh,
        cast(direction as string) as direction,
        cast(start_date as date) as start_date,
        cast(due_date as date) as due_date,
        cast({{ as_of_date() }} as date) as as_of_date,
        cast(baseline_period as string) as baseline_period,
        cast(baseline_value as double) as baseline_value,
        cast(current_period as string) as current_period,
        cast(current_value as double) as current_value,
        cast(target_value as string) as target_value_text,
        cast(target_number as double) as target_value,
        cast(progress as double) as progress,
        cast(time_elapsed as double) as time_elapsed,
        cast(
            (direction = 'increase' and target_number > baseline_value)
            or (direction = 'decrease' and target_number < baseline_value)
            as boolean
        ) as is_direction_consistent,
        cast(
            case
                when progress is null then 'no_data'
                when {{ as_of_date() }} > due_date and progress >= 1 then 'achieved'
                when {{ as_of_date() }} > due_date then 'missed'
                when progress >= 1 then 'achieved'
                when progress >= time_elapsed then 'on_track'
                when progress >= {{ var('kpi_status_at_risk_factor') }} * time_elapsed then 'at_risk'
                else 'off_track'
            end as string
        ) as status
    from measured
)

select * from final
