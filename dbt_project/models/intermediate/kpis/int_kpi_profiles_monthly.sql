{{ config(materialized='table') }}

-- A table: as a view, fct_kpi_monthly read only the months of its window, but each of the
-- three data tests computed every month again (3 to 5 s each at the large preset;
-- one build of the table costs about one of them; docs/performance.md).
--
-- Profile KPIs per month, segment all (metrics.md): profile_completeness and
-- full_profile_rate over the customers with a member profile by end(M) (a member-profile
-- version updated on or before end(M); customers known only from orders, tickets or
-- social accounts are not counted), using profile versions with updated_at <= end(M).
-- The quality target on profile completeness (expectations/fct_kpi_monthly.json) reads
-- this KPI, the one "profile completeness" of the product. duplicate_record_rate =
-- source customer records (raw.customers profiles) merged into another customer / source
-- customer records, both as of end(M). Cumulative counts by date keep this linear in the
-- number of customers.

with

months as (
    select * from {{ ref('int_kpi_months') }}
),

profiles_merged as (
    select * from {{ ref('int_customer_profiles_merged') }}
),

source_records_resolved as (
    select * from {{ ref('int_source_records_resolved') }}
),

customer_records as (
    select * from {{ ref('stg_raw__customers') }}
),

known_customers as (
    select
        customer_id,
        first_profile_date as known_date
    from profiles_merged
),

profile_events as (
    -- one event per customer becoming known, per profile field becoming known, and per
    -- customer having all six fields
    select
        known_date as event_date,
        'customers' as measure
    from known_customers
    union all
    {%- for field in ['customer_name', 'gender', 'birth_date', 'phone', 'email', 'city'] %}
    select
        first_{{ field }}_date as event_date,
        'fields' as measure
    from profiles_merged
    union all
    {%- endfor %}
    select
        greatest(
            first_customer_name_date, first_gender_date, first_birth_date_date,
            first_phone_date, first_email_date, first_city_date
        ) as event_date,
        'full_profiles' as measure
    from profiles_merged
    where
        first_customer_name_date is not null and first_gender_date is not null
        and first_birth_date_date is not null and first_phone_date is not null
        and first_email_date is not null and first_city_date is not null
),

source_customer_records as (
    select
        customer_records.customer_key,
        min(customer_records.updated_date) as known_date
    from customer_records
    group by customer_records.customer_key
),

record_events as (
    -- a source customer record becoming known, and its customer getting its first record
    select
        known_date as event_date,
        'records' as measure
    from source_customer_records
    union all
    select
        min(source_customer_records.known_date) as event_date,
        'record_customers' as measure
    from source_customer_records
    inner join source_records_resolved
        on source_records_resolved.entity = 'customers'
            and source_customer_records.customer_key = source_records_resolved.record_key
    group by source_records_resolved.customer_id
),

daily as (
    select
        event_date,
        measure,
        count(*) as events
    from profile_events
    where event_date is not null
    group by event_date, measure
    union all
    select
        event_date,
        measure,
        count(*) as events
    from record_events
    group by event_date, measure
),

as_of_end as (
    select
        months.month,
        sum(case when daily.measure = 'customers' then daily.events else 0 end) as known_customers,
        sum(case when daily.measure = 'fields' then daily.events else 0 end) as known_fields,
        sum(case when daily.measure = 'full_profiles' then daily.events else 0 end) as full_profiles,
        sum(case when daily.measure = 'records' then daily.events else 0 end) as source_records,
        sum(case when daily.measure = 'record_customers' then daily.events else 0 end) as record_customers
    from months
    left join daily
        on months.end_date >= daily.event_date
    group by months.month
),

unpivoted as (
    select
        month,
        'all' as segment_type,
        'all' as segment,
        'profile_completeness' as kpi,
        cast(known_fields as double) / 6.0 as numerator,
        cast(known_customers as double) as denominator,
        {{ safe_ratio('cast(known_fields as double) / 6', 'known_customers') }} as value
    from as_of_end
    union all
    select
        month,
        'all' as segment_type,
        'all' as segment,
        'full_profile_rate' as kpi,
        cast(full_profiles as double) as numerator,
        cast(known_customers as double) as denominator,
        {{ safe_ratio('full_profiles', 'known_customers') }} as value
    from as_of_end
    union all
    select
        month,
        'all' as segment_type,
        'all' as segment,
        'duplicate_record_rate' as kpi,
        cast(source_records - record_customers as double) as numerator,
        cast(source_records as double) as denominator,
        {{ safe_ratio('source_records - record_customers', 'source_records') }} as value
    from as_of_end
),

keyed as (
    select
        {{ month_label('month') }} || '|' || segment || '|' || kpi as kpi_row_id,
        *
    from unpivoted
)

select * from keyed
