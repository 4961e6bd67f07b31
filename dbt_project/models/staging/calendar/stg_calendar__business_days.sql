-- Mainland China's business calendar (source calendar.business_days, written by the
-- pipeline from the `holidays` library), typed: one row per date.

with

source as (
    select * from {{ source('calendar', 'business_days') }}
),

renamed as (
    select
        cast(calendar_date as date) as calendar_date,
        cast(iso_weekday as integer) as iso_weekday,
        cast(is_weekend as boolean) as is_weekend,
        cast(is_public_holiday as boolean) as is_public_holiday,
        cast(is_working_day as boolean) as is_working_day,
        cast(day_kind as string) as day_kind,
        cast(holiday_name_zh as string) as holiday_name_zh,
        cast(holiday_name_en as string) as holiday_name_en,
        cast(is_calendar_confirmed as boolean) as is_calendar_confirmed,
        cast(calendar_source as string) as calendar_source
    from source
)

select * from renamed
