-- One row per working day of the business calendar: the service team's working window
-- that day as UTC instants (docs/warehouse.md "SLA clocks"). Working days come from the
-- calendar (stg_calendar__business_days, from the `holidays` library): holidays are
-- closed whatever the weekday; a make-up working day (a weekend day worked in exchange)
-- has the hours of var makeup_workday_iso_weekday (Monday); the hours are those of seed
-- business_hours, local time in var business_timezone.

with

business_days as (
    select * from {{ ref('stg_calendar__business_days') }}
),

business_hours as (
    select * from {{ ref('business_hours') }}
),

hours as (
    select
        iso_weekday,
        cast(substr(opens_at, 1, 2) as integer) * 60 + cast(substr(opens_at, 4, 2) as integer) as opens_minute,
        cast(substr(closes_at, 1, 2) as integer) * 60 + cast(substr(closes_at, 4, 2) as integer) as closes_minute
    from business_hours
    where nullif(trim(opens_at), '') is not null and nullif(trim(closes_at), '') is not null
),

working_days as (
    select
        calendar_date,
        day_kind,
        case
            when day_kind = 'makeup_workday' then {{ var('makeup_workday_iso_weekday') }}
            else iso_weekday
        end as hours_weekday
    from business_days
    where is_working_day
),

windows as (
    select
        working_days.calendar_date,
        working_days.day_kind,
        {{ business_local_to_utc(add_minutes('cast(working_days.calendar_date as timestamp)', 'hours.opens_minute')) }}
            as window_start_at,
        {{ business_local_to_utc(add_minutes('cast(working_days.calendar_date as timestamp)', 'hours.closes_minute')) }}
            as window_end_at,
        hours.closes_minute - hours.opens_minute as working_minutes
    from working_days
    inner join hours
        on working_days.hours_weekday = hours.iso_weekday
    where hours.closes_minute > hours.opens_minute
)

select * from windows
