{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='record_id',
        on_schema_change='fail',
        pre_hook=["{{ delete_recomputed_rows('__rec_', 'touched', 'record_id', 'scoped.record_id', identity_identifiers_materialized()) }}"],
        post_hook=["{{ identity_records_finish() }}"],
    )
}}

-- One row per identity record: the things identity resolution links.
--   account:<source_system>:<customer_ref>  a customer account: a profile of raw.customers,
--                                           or the buyer id on orders (all the account's
--                                           orders are ONE record)
--   order:<source_system>:<order_id>        an order without customer_ref (walk-in, guest)
--   ticket:<ticket_id>                      a service ticket
--   social:<platform>:<account_id>          a social platform account

-- Incremental on DuckDB (macros/identity_records.sql): a nightly build aggregates again
-- only the records whose source keys have new staged rows, or had them before (an order
-- given a customer_ref moves from its order record to the account's); the other rows stay.
-- tests/test_dbt_incremental_staging.py compares it with a build from scratch.
{%- set plan = identity_records_plan() %}

with

{% if plan.materialized -%}
-- one row per source key: every key on a whole build; on an incremental build the
-- changed keys' new rows and the other keys of the touched records as kept
record_sources as (
    select * from {{ plan.work }}new
    {%- if plan.incremental %}
    union all
    select kept.*
    from {{ side_table('by_source') }} as kept
    where
        kept.record_id in (select touched.record_id from {{ plan.work }}touched as touched)
        and not {{ is_changed_key(plan.work ~ 'keys') }}
    {%- endif %}
),
{%- else -%}
{{ identity_record_source_ctes() }},
{%- endif %}

-- an account's rows: its profile versions and its orders; the only records that come
-- from more than one source key
account_records as (
    select
        record_id,
        'account' as record_type,
        min(source_system) as source_system,
        min(seen_at) as seen_at
    from record_sources
    where record_type = 'account'
    group by record_id
),

-- anonymous orders, tickets and social accounts: one source key per record
all_records as (
    select * from account_records
    union all
    select
        record_id,
        record_type,
        source_system,
        seen_at
    from record_sources
    where record_type <> 'account'
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
