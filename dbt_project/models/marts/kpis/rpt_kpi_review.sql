-- The SMART-target review as of D (metrics.md, "SMART targets and the KPI review"): one
-- row per target of the managers' targets file (stg_targets__kpi_targets).
--   baseline: the KPI in the month baseline_period ('YYYY-MM')
--   current:  flow KPIs: the latest complete month (fct_kpi_monthly.is_complete, per KPI:
--     its maturity has passed); when none is complete yet, the newest provisional month
--     is shown (current_is_complete false) and not graded. Point-in-time KPIs: the value
--     as of D (the row whose end_date is D).
--   provisional: the newest month after the current one that is not complete yet
--   target:   absolute, or '+N%' / '-N%' relative to the baseline
--   progress = (current - baseline) / (target - baseline)
--   time_elapsed = (D - start_date) / (due_date - start_date)
--   months_remaining: whole months after the current month up to the due month;
--   required_monthly_value = current + (target - current) / months_remaining (the next
--     month's value on a straight line to the target at the due month)
--   status, first match: no_data (status_reason says why), small_base (the current
--     value's base is below var min_segment_base: never graded), after the due date
--     achieved or missed, achieved (progress >= 1), on_track (progress >= time_elapsed),
--     at_risk (progress >= var kpi_status_at_risk_factor x time_elapsed), off_track.

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

latest_provisional as (
    select *
    from kpi_monthly
    where not is_complete
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
        baseline.is_complete as is_baseline_complete,
        baseline.has_enough_history as baseline_has_enough_history,
        case
            when kpi_definitions.kpi_type = 'point_in_time' then point_in_time.segment_type
            else coalesce(latest_complete.segment_type, latest_provisional.segment_type, baseline.segment_type)
        end as segment_type,
        case
            when kpi_definitions.kpi_type = 'point_in_time' then point_in_time.value
            when latest_complete.month is not null then latest_complete.value
            else latest_provisional.value
        end as current_value,
        case
            when kpi_definitions.kpi_type = 'point_in_time' then point_in_time.month_label
            when latest_complete.month is not null then latest_complete.month_label
            else latest_provisional.month_label
        end as current_period,
        case
            when kpi_definitions.kpi_type = 'point_in_time' then point_in_time.month
            when latest_complete.month is not null then latest_complete.month
            else latest_provisional.month
        end as current_month,
        case
            when kpi_definitions.kpi_type = 'point_in_time' then true
            else latest_complete.month is not null or latest_provisional.month is null
        end as current_is_complete,
        case
            when kpi_definitions.kpi_type = 'point_in_time' then point_in_time.is_small_base
            when latest_complete.month is not null then latest_complete.is_small_base
            else latest_provisional.is_small_base
        end as is_small_base,
        case
            when kpi_definitions.kpi_type = 'point_in_time' then point_in_time.has_enough_history
            when latest_complete.month is not null then latest_complete.has_enough_history
            else latest_provisional.has_enough_history
        end as current_has_enough_history,
        case
            when kpi_definitions.kpi_type <> 'point_in_time' and latest_complete.month is not null
                then latest_provisional.month_label
        end as provisional_period,
        case
            when kpi_definitions.kpi_type <> 'point_in_time' and latest_complete.month is not null
                then latest_provisional.value
        end as provisional_value,
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
    left join latest_provisional
        on kpi_targets.kpi = latest_provisional.kpi
            and kpi_targets.segment = latest_provisional.segment
            and latest_provisional.month > coalesce(latest_complete.month, cast('1900-01-01' as date))
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
        end as target_number,
        case
            when current_month is not null
                then {{ months_between('current_month', month_start('due_date')) }}
        end as months_remaining
    from valued
),

reasoned as (
    select
        *,
        case
            when kpi_type is null then 'unknown_kpi'
            when baseline_value is null then 'no_baseline'
            when not baseline_has_enough_history then 'baseline_incomplete_history'
            when not is_baseline_complete then 'baseline_provisional'
            when current_value is null then 'no_current'
            when not current_is_complete then 'no_complete_month'
            when not current_has_enough_history then 'current_incomplete_history'
            when target_number is null then 'no_target'
            when target_number = baseline_value then 'target_equals_baseline'
        end as status_reason
    from targeted
),

measured as (
    select
        *,
        case
            when status_reason is null
                then (current_value - baseline_value) / nullif(target_number - baseline_value, 0)
        end as progress,
        cast({{ days_between('start_date', as_of_date()) }} as double)
        / nullif({{ days_between('start_date', 'due_date') }}, 0) as time_elapsed,
        case
            when months_remaining > 0 and current_value is not null and target_number is not null
                then current_value + (target_number - current_value) / months_remaining
        end as required_monthly_value
    from reasoned
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
                when status_reason is not null then 'no_data'
                when is_small_base then 'small_base'
                when {{ as_of_date() }} > due_date and progress >= 1 then 'achieved'
                when {{ as_of_date() }} > due_date then 'missed'
                when progress >= 1 then 'achieved'
                when progress >= time_elapsed then 'on_track'
                when progress >= {{ var('kpi_status_at_risk_factor') }} * time_elapsed then 'at_risk'
                else 'off_track'
            end as string
        ) as status,
        cast(segment_type as string) as segment_type,
        cast(current_is_complete as boolean) as current_is_complete,
        cast(provisional_period as string) as provisional_period,
        cast(provisional_value as double) as provisional_value,
        cast(coalesce(is_small_base, false) as boolean) as is_small_base,
        cast(months_remaining as integer) as months_remaining,
        cast(required_monthly_value as double) as required_monthly_value,
        cast(status_reason as string) as status_reason
    from measured
)

select * from final
