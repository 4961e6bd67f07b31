{{ config(materialized='table') }}

-- Links between identity records: every record holding a usable identifier value is
-- linked to the smallest record holding the same value (a star per value: n - 1 edges
-- for n holders instead of n x (n - 1) / 2). Super-node values link nothing.

with

identifiers as (
    select * from {{ ref('int_identity_identifiers') }}
),

usable as (
    select
        record_id,
        identifier_type,
        identifier_value,
        min(record_id) over (partition by identifier_type, identifier_value) as anchor_record_id
    from identifiers
    where not is_supernode
),

edges as (
    select
        record_id as from_record_id,
        anchor_record_id as to_record_id,
        min(identifier_type) as identifier_type,
        count(*) as shared_identifiers
    from usable
    where record_id <> anchor_record_id
    group by record_id, anchor_record_id
),

final as (
    select
        from_record_id || '>' || to_record_id as edge_id,
        *
    from edges
)

select * from final
