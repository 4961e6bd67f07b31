{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ identity_edges_prepare() }}",
        post_hook=["{{ identity_edges_finish() }}"],
    )
}}

-- Links between identity records: every record holding a usable identifier value is
-- linked to the smallest record holding the same value (a star per value: n - 1 edges
-- for n holders instead of n x (n - 1) / 2). Super-node values link nothing.
--
-- Incremental on DuckDB (macros/identity_edges.sql): after an incremental build of
-- int_identity_identifiers, only the edges from the records it touched and from the
-- holders of the values it counted again are recomputed (the pre-hook deletes their old
-- edges); every other record holds the same values with the same holders and flags, so
-- its edges are unchanged. tests/test_dbt_project.py compares it with a build from
-- scratch.
{%- set plan = identity_edges_plan() %}

with

identifiers as (
    select * from {{ ref('int_identity_identifiers') }}
),

{% if plan.incremental -%}
-- the records whose edges are recomputed
scoped_records as (
    select * from {{ plan.work }}records
),

-- every usable value they hold, with all its holders (for the smallest one)
scoped_values as (
    select distinct
        identifiers.identifier_type,
        identifiers.identifier_value
    from identifiers
    where
        not identifiers.is_supernode
        and identifiers.record_id in (select scoped_records.record_id from scoped_records)
),

-- is_scoped: the edges from this record are recomputed
read_identifiers as (
    select
        identifiers.*,
        identifiers.record_id in (select scoped_records.record_id from scoped_records) as is_scoped
    from identifiers
    inner join scoped_values
        on identifiers.identifier_type = scoped_values.identifier_type
            and identifiers.identifier_value = scoped_values.identifier_value
),
{%- else -%}
read_identifiers as (
    select
        *,
        true as is_scoped
    from identifiers
),
{%- endif %}

usable as (
    select
        record_id,
        identifier_type,
        identifier_value,
        is_scoped,
        min(record_id) over (partition by identifier_type, identifier_value) as anchor_record_id
    from read_identifiers
    where not is_supernode
),

edges as (
    select
        record_id as from_record_id,
        anchor_record_id as to_record_id,
        min(identifier_type) as identifier_type,
        count(*) as shared_identifiers
    from usable
    where is_scoped and record_id <> anchor_record_id
    group by record_id, anchor_record_id
),

final as (
    select
        from_record_id || '>' || to_record_id as edge_id,
        *
    from edges
)

select * from final
