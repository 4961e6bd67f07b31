{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='record_id',
        on_schema_change='fail',
        database='restricted',
        schema='identity',
        post_hook=["{{ identity_identifiers_finish() }}"],
    )
}}

-- RESTRICTED: clear identifier values (phones, e-mails, union ids); lives in the
-- restricted store (restricted.duckdb, schema `identity`).

-- One row per (identity record, identifier). Identifier types:
--   phone, email, unionid   shared attributes; subject to the super-node guard
--   account                 <source_system>:<customer_ref>, a reference to an account
--   social                  a social account id (openid / uid), a reference to an account
--
-- Super-node guard (docs/warehouse.md, "Identity resolution"): a shared attribute links
-- nothing when it is carried by more than var supernode_threshold (20) distinct records
--   - of the long-lived kinds (accounts, social accounts), in total, or
--   - of any kind first seen in the same calendar month.
-- A shop's front-desk phone typed into walk-in orders is on about a hundred orders a
-- month; a loyal guest buyer's own phone is on a few orders a month, even when it adds
-- up to more than 20 orders over the years, and still links them. References are never
-- suppressed (every ticket of one member points at the member's account: a key, not a
-- coincidence).

-- Incremental on DuckDB (macros/identity_identifiers.sql): a nightly build recomputes
-- the records whose source keys (accounts, orders, tickets, social accounts) have new
-- staged rows, and the counts and flags of every value they hold or held, for all its
-- holders; the other rows stay. tests/test_dbt_project.py and
-- tests/test_dbt_incremental_staging.py compare it with a build from scratch.
{%- set plan = identity_identifiers_plan() %}

with

records as (
    select * from {{ ref('int_identity_records') }}
),

{% if plan.materialized -%}
-- (source key, record, identifier) of this build's keys: all, or the changed ones
source_identifiers as (
    select * from {{ plan.work }}new
),
{%- else -%}
{{ identity_source_identifier_ctes() }},
{%- endif %}

{% if not plan.incremental -%}
holders as (
    select distinct
        record_id,
        identifier_type,
        identifier_value
    from source_identifiers
),
{%- else -%}
-- the touched records' identifiers as of now
touched_rows as (
    select * from {{ plan.work }}rows
),

-- every value a touched record holds or held: counted again over all its holders
-- (made by the plan: int_identity_edges reads them after this build)
affected_values as (
    select * from {{ plan.work }}values
),

-- the rows of the other records holding one of those values
kept_rows as (
    select built.*
    from {{ this }} as built
    inner join affected_values
        on built.identifier_type = affected_values.identifier_type
            and built.identifier_value = affected_values.identifier_value
    where built.record_id not in (select touched.record_id from {{ plan.work }}touched as touched)
),

holders as (
    select
        touched_rows.record_id,
        touched_rows.identifier_type,
        touched_rows.identifier_value
    from touched_rows
    union all
    select
        kept_rows.record_id,
        kept_rows.identifier_type,
        kept_rows.identifier_value
    from kept_rows
),
{%- endif %}

dated as (
    select
        holders.*,
        records.record_type in ('account', 'social') as is_long_lived_record,
        {{ month_start('records.first_seen_date') }} as first_seen_month
    from holders
    inner join records
        on holders.record_id = records.record_id
),

-- Per identifier value, from one two-level aggregate (per first-seen month, then per
-- value) joined back to the records, instead of two window functions over every
-- (record, identifier) row: the number of records holding it, of long-lived records, and
-- the largest number first seen in one month.
monthly_counts as (
    select
        identifier_type,
        identifier_value,
        first_seen_month,
        count(*) as records_in_month,
        count(case when is_long_lived_record then 1 end) as long_lived_records_in_month
    from dated
    group by identifier_type, identifier_value, first_seen_month
),

value_counts as (
    select
        identifier_type,
        identifier_value,
        sum(records_in_month) as record_count,
        sum(long_lived_records_in_month) as long_lived_record_count,
        max(records_in_month) as max_records_in_a_month
    from monthly_counts
    group by identifier_type, identifier_value
),

counted as (
    select
        {{ hash_key("dated.record_id || '|' || dated.identifier_type || '|' || dated.identifier_value") }}
            as record_identifier_id,
        dated.record_id,
        dated.identifier_type,
        dated.identifier_value,
        cast(value_counts.record_count as bigint) as record_count,
        cast(value_counts.long_lived_record_count as bigint) as long_lived_record_count,
        value_counts.max_records_in_a_month
    from dated
    inner join value_counts
        on dated.identifier_type = value_counts.identifier_type
            and dated.identifier_value = value_counts.identifier_value
    {%- if plan.incremental %}
    union all
    -- the kept records' rows of values no touched record holds or held: as they were
    select
        built.record_identifier_id,
        built.record_id,
        built.identifier_type,
        built.identifier_value,
        built.record_count,
        built.long_lived_record_count,
        built.max_records_in_a_month
    from {{ this }} as built
    where
        built.record_id in (select kept_rows.record_id from kept_rows)
        and not exists (
            select 1 from affected_values
            where affected_values.identifier_type = built.identifier_type
                and affected_values.identifier_value = built.identifier_value
        )
    {%- endif %}
),

final as (
    select
        *,
        identifier_type in ('phone', 'email', 'unionid')
        and (
            long_lived_record_count > {{ var('supernode_threshold') }}
            or max_records_in_a_month > {{ var('supernode_threshold') }}
        ) as is_supernode
    from counted
)

select * from final
