{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_recomputed_rows('__cr_', 'scope', 'record_id', 'scoped.record_id', identity_identifiers_materialized()) }}",
        post_hook=["{{ customers_resolved_finish() }}"],
    )
}}

-- Every identity record with its customer (NULL: the record identifies nobody, e.g. a
-- walk-in order typed with the shop's front-desk phone only).
--
-- Incremental on DuckDB (macros/customers_resolved.sql): a nightly build computes again
-- only the records whose own row or component changed and every record of their
-- customers, before and after; the pre-hook deletes their rows first.
-- tests/test_dbt_incremental_staging.py and tests/test_dbt_project.py compare it with a
-- build from scratch.
{%- set plan = customers_resolved_plan() %}

with

records as (
    select * from {{ ref('int_identity_records') }}
    {{- customers_resolved_only_scope(plan) }}
),

components as (
    select * from {{ ref('int_identity_components_resolved') }}
    {{- customers_resolved_only_scope(plan) }}
),

resolved_records as (
    select
        records.record_id,
        records.record_type,
        records.source_system,
        records.first_seen_at,
        records.first_seen_date,
        components.customer_id,
        components.component_record_id
    from records
    left join components
        on records.record_id = components.record_id
),

-- the records per customer: one aggregate joined back (a count over a window partitioned
-- by customer took 20 % longer at the large preset)
customer_sizes as (
    select
        customer_id,
        count(*) as customer_record_count
    from resolved_records
    where customer_id is not null
    group by customer_id
),

resolved as (
    select
        resolved_records.*,
        customer_sizes.customer_record_count
    from resolved_records
    left join customer_sizes
        on resolved_records.customer_id = customer_sizes.customer_id
)

select * from resolved
