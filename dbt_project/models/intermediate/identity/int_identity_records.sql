{{ config(materialized='table') }}

-- One row per identity record: the things identity resolution links.
--   account:<source_system>:<customer_ref>  a customer account: a profile of raw.customers,
--                                           or the buyer id on orders (all the account's
--                                           orders are ONE record)
--   order:<source_system>:<order_id>        an order without customer_ref (walk-in, guest)
--   ticket:<ticket_id>                      a service ticket
--   social:<platform>:<account_id>          a social platform account

with

customers as (
    select * from {{ ref('stg_raw__customers') }}
),

order_lines as (
    select * from {{ ref('stg_raw__orders') }}
),

service_events as (
    select * from {{ ref('stg_raw__service_events') }}
),

social_interactions as (
    select * from {{ ref('stg_raw__social_interactions') }}
),

orders as (
    -- an order with a customer_ref belongs to the account of that ref; all its lines
    -- share the order's record
    select
        order_id,
        min(source_system) as source_system,
        min(customer_ref) as customer_ref,
        min(ordered_at) as ordered_at
    from order_lines
    group by order_id
),

-- an account's rows: its profile versions and its orders (grouped per account first);
-- the only records that come from more than one row
account_rows as (
    select
        'account:' || customer_key as record_id,
        source_system,
        updated_at as seen_at
    from customers

    union all

    select
        'account:' || source_system || ':' || customer_ref as record_id,
        source_system,
        min(ordered_at) as seen_at
    from orders
    where customer_ref is not null
    group by source_system, customer_ref
),

account_records as (
    select
        record_id,
        'account' as record_type,
        min(source_system) as source_system,
        min(seen_at) as seen_at
    from account_rows
    group by record_id
),

anonymous_order_records as (
    select
        'order:' || order_id as record_id,
        'order' as record_type,
        source_system,
        ordered_at as seen_at
    from orders
    where customer_ref is null
),

-- tickets and social accounts: one row per record (the earliest time and smallest source
-- of its events / interactions)
ticket_records as (
    select
        'ticket:' || ticket_id as record_id,
        'ticket' as record_type,
        min(source_system) as source_system,
        min(event_at) as seen_at
    from service_events
    group by ticket_id
),

social_records as (
    select
        'social:' || social_account_key as record_id,
        'social' as record_type,
        min(platform) as source_system,
        min(occurred_at) as seen_at
    from social_interactions
    group by social_account_key
),

-- one row per record in each part, and the parts are disjoint (by the record id's
-- prefix): no grouping of their union
all_records as (
    select * from account_records
    union all
    select * from anonymous_order_records
    union all
    select * from ticket_records
    union all
    select * from social_records
),

records as (
    select
        record_id,
        record_type,
        source_system,
        seen_at as first_seen_at,
        {{ to_business_date('seen_at') }} as first_seen_date,
        -- an account or a social account is someone by itself; orders and tickets are
        -- someone only through an identifier
        record_type in ('account', 'social') as is_self_identified
    from all_records
)

select * from records
