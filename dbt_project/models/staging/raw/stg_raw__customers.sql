{{
    config(
        materialized=crm_incremental_materialization(),
        unique_key='customer_version_id',
    )
}}

-- Incremental on DuckDB: only the raw rows new to this build are normalised, then merged
-- with the rows already staged under their keys (macros/incremental_staging.sql).
{%- set plan = staging_plan() %}

with

source as (
    {{ staging_source(plan, source('raw', 'customers'), 'updated_at') }}
),

renamed as (
    select
        -- keys
        {{ clean_text('source_system') }} || ':' || {{ clean_text('customer_ref') }} as customer_key,
        {{ clean_text('source_system') }} as source_system,
        {{ clean_text('customer_ref') }} as customer_ref,

        -- profile (normalised; the raw value is kept only to count invalid values)
        {{ clean_text('name') }} as customer_name,
        {{ normalize_gender('gender') }} as gender,
        birth_date,
        {{ normalize_phone('phone') }} as phone,
        {{ normalize_email('email') }} as email,
        {{ clean_text('province') }} as province,
        {{ clean_text('city') }} as city,
        {{ clean_text('address') }} as address,
        {{ clean_text('member_level') }} as member_level,
        marketing_consent,
        {{ clean_text('unionid') }} as unionid,
        {{ clean_text('phone') }} is not null and {{ normalize_phone('phone') }} is null as is_phone_invalid,
        {{ clean_text('email') }} is not null and {{ normalize_email('email') }} is null as is_email_invalid,

        -- timestamps (UTC) and business dates
        updated_at,
        {{ to_business_date('updated_at') }} as updated_date,
        registered_at,
        {{ to_business_date('registered_at') }} as registered_date,

        -- lineage
        _source_name as source_name,
        _source_file as source_file,
        _source_line as source_line,
        _delivery_date as delivery_date,
        _loaded_at as loaded_at
    from source
),

new_rows as (
    select
        {{ hash_key("customer_key || '|' || cast(updated_at as string)") }} as customer_version_id,
        *
    from renamed
),

candidates as (
    {{ staging_candidates(plan, 'new_rows', 'customer_version_id') }}
),

deduplicated as (
    -- Exact duplicates (the same version delivered in two files) and re-deliveries of a
    -- version: one row per (source_system, customer_ref, updated_at), the latest delivery.
    select *
    from candidates
    qualify
        row_number() over (
            partition by customer_key, updated_at
            order by delivery_date desc, loaded_at desc, source_file desc, source_line desc
        ) = 1
)

select * from deduplicated
