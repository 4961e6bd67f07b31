{{ config(materialized='table') }}

-- Connected components of the identity graph (transitive linking), by minimum-label
-- propagation (macro connected_components). Nodes are the identified records: accounts,
-- social accounts, and orders / tickets with at least one usable identifier.

with

records as (
    select * from {{ ref('int_identity_records') }}
),

identifiers as (
    select * from {{ ref('int_identity_identifiers') }}
),

edges as (
    select * from {{ ref('int_identity_edges') }}
),

nodes as (
    select record_id as node_id
    from records
    where
        is_self_identified
        or record_id in (
            select identifiers.record_id
            from identifiers
            where not identifiers.is_supernode
        )
),

undirected_edges as (
    select
        from_record_id as from_node_id,
        to_record_id as to_node_id
    from edges
    union
    select
        to_record_id as from_node_id,
        from_record_id as to_node_id
    from edges
),

components as (
    {{ connected_components('nodes', 'undirected_edges') }}
),

final as (
    select
        node_id as record_id,
        component_node_id as component_record_id,
        {{ pseudonym('component_node_id') }} as customer_id
    from components
)

select * from final
