{{
    config(
        materialized=crm_incremental_materialization(),
        database='restricted',
        schema='golden',
        incremental_strategy='append',
        on_schema_change='sync_all_columns',
        pre_hook="{{ golden_record_prepare() }}",
        post_hook=["{{ golden_record_finish() }}"],
    )
}}

-- RESTRICTED: the golden record with clear personal data (name, phone, email, address),
-- one row per customer. Lives in the restricted store (restricted.duckdb, schema `golden`,
-- owner-only file, never published); published marts carry has_* flags only.
--
-- Survivorship, per field independently: the latest non-NULL value over the customer's
-- member-profile versions (by updated_at), ties broken by the lower seed source_priority,
-- then the smaller record key.
-- first_<field>_date: the first business date the field was known (non-NULL on some
-- version), which gives the profile completeness of any past date.
--
-- Incremental on DuckDB (macros/golden_record.sql): a nightly build computes again only
-- the customers of the account keys that int_source_records_resolved computed again (a new
-- profile version, a change of customer), before and after; the pre-hook deletes their
-- rows first. tests/test_dbt_incremental_staging.py and tests/test_dbt_project.py compare
-- it with a build from scratch.
-- depends_on: {{ ref('int_source_records_resolved') }}, {{ ref('source_priority') }}

{%- set fields = ['customer_name', 'gender', 'birth_date', 'phone', 'email', 'province', 'city',
                  'address', 'member_level', 'marketing_consent', 'unionid', 'registered_at'] %}
{%- set completeness_fields = ['customer_name', 'gender', 'birth_date', 'phone', 'email', 'city'] %}
{%- set survivorship = golden_record_survivorship() %}
{%- set scope = golden_record_plan() if is_incremental() else none %}

with

profile_versions as (
    -- version_rank: each customer's versions in survivorship order (no ties: a record has
    -- one version per updated_at)
    select
        *,
        row_number() over (
            partition by customer_id
            order by {{ sort_keys_sql(survivorship) }}
        ) as version_rank
    from {{ ref('int_customer_profile_versions') }}
    {%- if scope is not none %}
    where customer_id in (select scoped.customer_id from {{ scope }} as scoped)
    {%- endif %}
),

merged as (
    select
        customer_id,
        {%- for field in fields %}
        {{ first_known(field, survivorship, rank='version_rank') }} as {{ field }},
        {%- endfor %}
        {%- for field in completeness_fields %}
        min(updated_date) filter (where {{ field }} is not null) as first_{{ field }}_date,
        {%- endfor %}
        count(*) as profile_version_count,
        min(updated_date) as first_profile_date,
        max(updated_at) as last_updated_at
    from profile_versions
    group by customer_id
),

final as (
    select
        *,
        (
            {%- for field in completeness_fields %}
            cast({{ field }} is not null as integer){{ ' +' if not loop.last }}
            {%- endfor %}
        ) / cast(6 as double) as profile_completeness
    from merged
)

select * from final
