{{ config(materialized='table', post_hook="{{ connected_components_cleanup() }}") }}

-- Connected components of the identity graph (transitive linking), by minimum-label
-- propagation (macro connected_components). Nodes are the identified records: accounts,
-- social accounts, and orders / tickets with at least one usable identifier.

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

with

components as (
    {{ connected_components(nodes_sql, undirected_edges_sql) }}
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
