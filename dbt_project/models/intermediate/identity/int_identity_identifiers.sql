{{ config(materialized='table', database='restricted', schema='identity') }}

-- RESTRICTED: clear identifier values (phones, e-mails, union ids); lives in the
-- restricted store (restricted.duckdb, schema `identity`).

-- One row per (identity record, identifier). Identifier types:
--   phone, email, unionid   shared attributes; subject to the super-node guard
--   account                 <source_system>:<customer_ref>, a reference to an account
--   social                  a social account id (openid / uid), a reference to an account
--
-- Super-node guard (docs/warehouse.md, "Identity resolution"): a shared attribute links
-- nothing when it is carried by more than var supernode_threshold (20) distinct records
--   - of the long-lived kinds (accounts, social accounts), in total, or
--   - of any kind first seen in the same calendar month.
-- A shop's front-desk phone typed into walk-in orders is on about a hundred orders a
-- month; a loyal guest buyer's own phone is on a few orders a month, even when it adds
-- up to more than 20 orders over the years, and still links them. References are never
-- suppressed (every ticket of one member points at the member's account: a key, not a
-- coincidence).

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

records as (
    select * from {{ ref('int_identity_records') }}
),

-- The identifier columns once per distinct value set (an order's lines, a ticket's events
-- and a social account's interactions mostly repeat them): the same distinct identifiers
-- below, from far fewer rows.
order_buyers as (
    select distinct
        order_id,
        source_system,
        customer_ref,
        buyer_phone,
        buyer_email
    from order_lines
),

ticket_requesters as (
    select distinct
        ticket_id,
        customer_ref,
        phone,
        email,
        social_account_id
    from service_events
),

social_accounts as (
    select distinct
        social_account_key,
        account_id,
        unionid,
        phone
    from social_interactions
),

order_record_ids as (
    -- an order with a customer_ref belongs to the account record of that ref
    select
        order_id,
        coalesce(
            'account:' || min(source_system) || ':' || min(customer_ref),
            'order:' || order_id
        ) as record_id
    from order_buyers
    group by order_id
),

customer_identifiers as (
    select
        'account:' || customer_key as record_id,
        'account' as identifier_type,
        customer_key as identifier_value
    from customers
    union all
    select
        'account:' || customer_key as record_id,
        'phone' as identifier_type,
        phone as identifier_value
    from customers
    union all
    select
        'account:' || customer_key as record_id,
        'email' as identifier_type,
        email as identifier_value
    from customers
    union all
    select
        'account:' || customer_key as record_id,
        'unionid' as identifier_type,
        unionid as identifier_value
    from customers
),

order_buyer_records as (
    select
        order_record_ids.record_id,
        order_buyers.source_system,
        order_buyers.customer_ref,
        order_buyers.buyer_phone,
        order_buyers.buyer_email
    from order_buyers
    inner join order_record_ids on order_buyers.order_id = order_record_ids.order_id
),

order_identifiers as (
    select
        record_id,
        'account' as identifier_type,
        source_system || ':' || customer_ref as identifier_value
    from order_buyer_records
    union all
    select
        record_id,
        'phone' as identifier_type,
        buyer_phone as identifier_value
    from order_buyer_records
    union all
    select
        record_id,
        'email' as identifier_type,
        buyer_email as identifier_value
    from order_buyer_records
),

ticket_identifiers as (
    select
        'ticket:' || ticket_id as record_id,
        'account' as identifier_type,
        '{{ var("ticket_customer_ref_source_system") }}:' || customer_ref as identifier_value
    from ticket_requesters
    union all
    select
        'ticket:' || ticket_id as record_id,
        'phone' as identifier_type,
        phone as identifier_value
    from ticket_requesters
    union all
    select
        'ticket:' || ticket_id as record_id,
        'email' as identifier_type,
        email as identifier_value
    from ticket_requesters
    union all
    select
        'ticket:' || ticket_id as record_id,
        'social' as identifier_type,
        -- 'wechat:o6_x' and 'o6_x' both name the account o6_x
        {{ regex_replace_all('social_account_id', "'^(wechat|weibo|douyin|xiaohongshu|mini_program):'", "''") }} as identifier_value
    from ticket_requesters
),

social_identifiers as (
    select
        'social:' || social_account_key as record_id,
        'social' as identifier_type,
        account_id as identifier_value
    from social_accounts
    union all
    select
        'social:' || social_account_key as record_id,
        'unionid' as identifier_type,
        unionid as identifier_value
    from social_accounts
    union all
    select
        'social:' || social_account_key as record_id,
        'phone' as identifier_type,
        phone as identifier_value
    from social_accounts
),

all_identifiers as (
    select * from customer_identifiers
    union all
    select * from order_identifiers
    union all
    select * from ticket_identifiers
    union all
    select * from social_identifiers
),

distinct_identifiers as (
    select distinct
        record_id,
        identifier_type,
        identifier_value
    from all_identifiers
    where identifier_value is not null
),

dated as (
    select
        distinct_identifiers.*,
        records.record_type in ('account', 'social') as is_long_lived_record,
        {{ month_start('records.first_seen_date') }} as first_seen_month
    from distinct_identifiers
    inner join records
        on distinct_identifiers.record_id = records.record_id
),

-- Per identifier value, from one two-level aggregate (per first-seen month, then per
-- value) joined back to the records, instead of two window functions over every
-- (record, identifier) row: the number of records holding it, of long-lived records, and
-- the largest number first seen in one month.
monthly_counts as (
    select
        identifier_type,
        identifier_value,
        first_seen_month,
        count(*) as records_in_month,
        count(case when is_long_lived_record then 1 end) as long_lived_records_in_month
    from dated
    group by identifier_type, identifier_value, first_seen_month
),

value_counts as (
    select
        identifier_type,
        identifier_value,
        sum(records_in_month) as record_count,
        sum(long_lived_records_in_month) as long_lived_record_count,
        max(records_in_month) as max_records_in_a_month
    from monthly_counts
    group by identifier_type, identifier_value
),

counted as (
    select
        {{ hash_key("dated.record_id || '|' || dated.identifier_type || '|' || dated.identifier_value") }}
            as record_identifier_id,
        dated.record_id,
        dated.identifier_type,
        dated.identifier_value,
        cast(value_counts.record_count as bigint) as record_count,
        cast(value_counts.long_lived_record_count as bigint) as long_lived_record_count,
        value_counts.max_records_in_a_month
    from dated
    inner join value_counts
        on dated.identifier_type = value_counts.identifier_type
            and dated.identifier_value = value_counts.identifier_value
),

final as (
    select
        *,
        identifier_type in ('phone', 'email', 'unionid')
        and (
            long_lived_record_count > {{ var('supernode_threshold') }}
            or max_records_in_a_month > {{ var('supernode_threshold') }}
        ) as is_supernode
    from counted
)

select * from final
