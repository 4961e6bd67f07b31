{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='record_id',
        on_schema_change='fail',
        post_hook=[
            "{{ identity_components_finish() }}",
            "{{ connected_components_cleanup() }}",
        ],
    )
}}

-- Connected components of the identity graph (transitive linking), by minimum-label
-- propagation (macro connected_components). Nodes are the identified records: accounts,
-- social accounts, and orders / tickets with at least one usable identifier.
--
-- Incremental on DuckDB (macros/identity_components.sql): a nightly build recomputes only
-- the components the night can have changed. int_identity_edges keeps the edges that
-- appeared or disappeared in its build (a new shared identifier, a super-node flip); the
-- records at either end of those, the new nodes and the other ends of their edges, and
-- the records that stopped being nodes are "touched"; every component of the last build
-- that holds a touched record is recomputed whole, with the new nodes. An edge that did
-- not change joins two records of one old component, so the recomputed records have no
-- edge to the others: the result equals a computation from scratch
-- (tests/test_dbt_project.py builds both and compares them). Labels are the smallest
-- record of each component, so the components left alone keep theirs. The post-hook
-- deletes the records that are no longer nodes and keeps the id of the edges build it
-- read. Every component is computed on a first build, --full-refresh, and when the edges
-- were not built exactly once since (or built from scratch).

{%- set nodes_sql %}
    select records.record_id as node_id
    from {{ ref('int_identity_records') }} as records
    where
        records.is_self_identified
        or records.record_id in (
            select identifiers.record_id
            from {{ ref('int_identity_identifiers') }} as identifiers
            where not identifiers.is_supernode
        )
{%- endset %}

{%- set undirected_edges_sql %}
    select
        edges.from_record_id as from_node_id,
        edges.to_record_id as to_node_id
    from {{ ref('int_identity_edges') }} as edges
    union
    select
        edges.to_record_id as from_node_id,
        edges.from_record_id as to_node_id
    from {{ ref('int_identity_edges') }} as edges
{%- endset %}

{#- every node, or on an incremental DuckDB build only those whose component can have
    changed (macros/identity_components.sql) -#}
{%- set inputs = identity_components_inputs(nodes_sql, undirected_edges_sql) %}

with

components as (
    {{ connected_components(inputs.nodes_sql, inputs.edges_sql) }}
),

customer_ids as (
    -- the keyed pseudonym once per component, not once per record
    select
        component_node_id,
        {{ pseudonym('component_node_id') }} as customer_id
    from (select distinct components.component_node_id from components) as component_labels
),

final as (
    select
        components.node_id as record_id,
        components.component_node_id as component_record_id,
        customer_ids.customer_id
    from components
    inner join customer_ids
        on components.component_node_id = customer_ids.component_node_id
)

select * from final
