-- Every member-profile version (raw.customers) of a resolved customer, with the seed
-- source_priority of its system: the input of the golden record (survivorship) and of
-- the monthly profile completeness ("profile versions with updated_at <= end(M)").
-- Contact data seen on orders, tickets and social accounts links identities but is not a
-- profile: it does not fill profile fields (docs/warehouse.md, "Survivorship").

with

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

source_records_resolved as (
    select * from {{ ref('int_source_records_resolved') }}
),

source_priority as (
    select * from {{ ref('source_priority') }}
),

final as (
    select
        customers.customer_version_id as profile_version_id,
        source_records_resolved.customer_id,
        customers.customer_key as record_key,
        customers.source_system,
        customers.updated_at,
        customers.updated_date,
        customers.registered_at,
        customers.customer_name,
        customers.gender,
        customers.birth_date,
        customers.phone,
        customers.email,
        customers.province,
        customers.city,
        customers.address,
        customers.member_level,
        customers.marketing_consent,
        customers.unionid,
        coalesce(source_priority.priority, 999) as source_priority
    from customers
    inner join source_records_resolved
        on customers.customer_key = source_records_resolved.record_key
            and source_records_resolved.entity = 'customers'
    left join source_priority
        on customers.source_system = source_priority.source_system
)

select * from final
