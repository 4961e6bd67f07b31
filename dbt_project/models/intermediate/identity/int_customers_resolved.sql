{{ config(materialized='table') }}

-- Every identity record with its customer (NULL: the record identifies nobody, e.g. a
-- walk-in order typed with the shop's front-desk phone only).

with

records as (
    select * from {{ ref('int_identity_records') }}
),

components as (
    select * from {{ ref('int_identity_components_resolved') }}
),

resolved as (
    select
        records.record_id,
        records.record_type,
        records.source_system,
        records.first_seen_at,
        records.first_seen_date,
        components.customer_id,
        components.component_record_id,
        case
            when components.customer_id is not null
                then count(*) over (partition by components.customer_id)
        end as customer_record_count
    from records
    left join components
        on records.record_id = components.record_id
)

select * from resolved
