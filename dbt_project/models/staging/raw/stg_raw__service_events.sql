{{
    config(
        materialized=crm_incremental_materialization(),
        unique_key='service_event_id',
    )
}}

-- Incremental on DuckDB: only the raw rows new to this build are normalised, then merged
-- with the rows already staged under their keys (macros/incremental_staging.sql).
{%- set plan = staging_plan() %}

with

source as (
    {{ staging_source(plan, source('raw', 'service_events'), 'event_at') }}
),

renamed as (
    select
        -- keys
        {{ clean_text('ticket_id') }} as ticket_id,
        {{ clean_text('event_id') }} as source_event_id,
        _source_name as source_system,

        -- event
        {{ normalize_code('event_type') }} as event_type,
        {{ normalize_code('channel') }} as channel,
        {{ normalize_priority('priority') }} as priority,
        {{ normalize_code('category') }} as category,

        -- requester identifiers
        {{ clean_text('customer_ref') }} as customer_ref,
        {{ normalize_phone('phone') }} as phone,
        {{ normalize_email('email') }} as email,
        {{ clean_text('social_account_id') }} as social_account_id,

        {{ clean_text('agent_id') }} as agent_id,
        csat_score,
        nps_score,

        -- timestamps
        event_at,
        {{ to_business_date('event_at') }} as event_date,

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
        {{ hash_key(
            "concat_ws('|', ticket_id, event_type, cast(event_at as string), channel, priority, category,"
            ~ " customer_ref, phone, email, social_account_id, agent_id,"
            ~ " cast(csat_score as string), cast(nps_score as string))"
        ) }} as service_event_id,
        *
    from renamed
),

candidates as (
    {{ staging_candidates(plan, 'new_rows', 'service_event_id') }}
),

deduplicated as (
    -- Exact duplicates: the same event (all canonical values but the event id, which may
    -- be a hash of the delivered row) delivered twice; the latest delivery is kept.
    select *
    from candidates
    qualify
        row_number() over (
            partition by
                ticket_id, event_type, event_at, channel, priority, category, customer_ref,
                phone, email, social_account_id, agent_id, csat_score, nps_score
            order by delivery_date desc, loaded_at desc, source_file desc, source_line desc
        ) = 1
)

select * from deduplicated
