{{
    config(
        materialized=crm_incremental_materialization(),
        unique_key='interaction_id',
    )
}}

-- Incremental on DuckDB: only the raw rows new to this build are normalised, then merged
-- with the rows already staged under their keys (macros/incremental_staging.sql).
{%- set plan = staging_plan() %}

with

source as (
    {{ staging_source(plan, source('raw', 'social_interactions'), 'occurred_at') }}
),

renamed as (
    select
        -- keys
        {{ normalize_code('platform') }} || ':' || {{ clean_text('interaction_id') }} as interaction_id,
        {{ clean_text('interaction_id') }} as source_interaction_id,
        {{ normalize_code('platform') }} as platform,
        {{ normalize_code('platform') }} || ':' || {{ clean_text('account_id') }} as social_account_key,
        {{ clean_text('account_id') }} as account_id,

        -- identifiers
        {{ clean_text('unionid') }} as unionid,
        {{ normalize_phone('phone') }} as phone,

        -- interaction
        {{ normalize_code('direction') }} as direction,
        {{ normalize_code('interaction_type') }} as interaction_type,
        {{ clean_text('campaign_id') }} as campaign_id,
        content,

        -- timestamps
        occurred_at,
        {{ to_business_date('occurred_at') }} as occurred_date,

        -- lineage
        _source_name as source_name,
        _source_file as source_file,
        _source_line as source_line,
        _delivery_date as delivery_date,
        _loaded_at as loaded_at
    from source
),

new_rows as (
    select * from renamed
),

candidates as (
    {{ staging_candidates(plan, 'new_rows', 'interaction_id') }}
),

deduplicated as (
    -- One row per (platform, interaction id): exact duplicates and re-deliveries collapse
    -- to the latest delivery.
    select *
    from candidates
    qualify
        row_number() over (
            partition by interaction_id
            order by delivery_date desc, loaded_at desc, source_file desc, source_line desc
        ) = 1
)

select * from deduplicated
