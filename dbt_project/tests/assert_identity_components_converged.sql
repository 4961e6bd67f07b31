-- Connected components are complete and labelled by their smallest record: no identity
-- edge joins two different components, and every component's label is a record of that
-- component labelled with itself and not larger than any of its members. Engine-agnostic:
-- it also checks the fixed-round implementation used where recursive CTEs are missing.

with

edges as (
    select * from {{ ref('int_identity_edges') }}
),

components as (
    select * from {{ ref('int_identity_components_resolved') }}
),

split_edges as (
    select
        edges.edge_id as failing_id,
        'edge across components' as reason
    from edges
    inner join components as from_component
        on edges.from_record_id = from_component.record_id
    inner join components as to_component
        on edges.to_record_id = to_component.record_id
    where from_component.component_record_id <> to_component.component_record_id
),

bad_labels as (
    select
        components.record_id as failing_id,
        'label is not the smallest member labelled with itself' as reason
    from components
    left join components as labels
        on components.component_record_id = labels.record_id
    where
        labels.record_id is null
        or labels.component_record_id <> labels.record_id
        or components.record_id < components.component_record_id
)

select * from split_edges
union all
select * from bad_labels
