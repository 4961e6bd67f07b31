{#- Incremental identity records (int_identity_records, DuckDB only; on Spark, in unit tests
    and when the model is only compiled it is computed whole from the CTEs of
    identity_record_source_ctes).

    A record's row (its type, smallest source system, first-seen time) is the aggregate of
    its source keys' rows: a customer account's profile versions and the orders that carry
    its customer_ref, an anonymous order's lines, a ticket's events, a social account's
    interactions. A build keeps one row per source key (source_entity, source_key,
    record_id, record_type, source_system, seen_at) in `<model>__by_source` and the staging
    state it read in `<model>__build_log`. The next build takes the source keys with a
    staged row new since that state (macros/staged_keys.sql), computes their rows again,
    and "touches" the records those keys belong to now and belonged to then (an order given
    a customer_ref leaves its order record for the account's; a social account can lose its
    only interaction). A touched record is aggregated again over all its source keys; one
    left with none is deleted (pre-hook). The rest keeps its rows.

    Whole (every key) in the cases of macros/staged_keys.sql. The decision and the counts
    are printed in the dbt log. An incremental build keeps the touched records in
    `<model>__changed_records` (and its build in `<model>__last_build`,
    macros/build_records.sql), and its changed keys in `<model>__changed_keys` with the
    staging state they were found from (`<model>__changed_keys_from`): int_identity_identifiers
    takes them when it kept the same state. Work tables `<model>__rec_*` are dropped by the
    post-hook. -#}

{#- What the rows depend on besides the staged rows: the SQL of the model and of the macros
    it calls (sql_fingerprint), the SQL these macros render (with the dbt macros they call)
    and the business timezone (first-seen dates). -#}
{% macro identity_records_fingerprint() -%}
    {{ return(sql_fingerprint() ~ '|' ~ local_md5(identity_record_source_ctes()) ~ '|'
        ~ local_md5(to_business_date('seen_at')) ~ '|' ~ var('business_timezone')) }}
{%- endmacro %}

{#- The CTEs that compute one row per source key from staging (source_entity, source_key,
    record_id, record_type, source_system, seen_at), ending with `record_sources`. With
    `keys` (a relation of source_entity, source_key) only for those keys. -#}
{% macro identity_record_source_ctes(keys=none) -%}
customer_sources as (
    select
        'customers' as source_entity,
        customer_key as source_key,
        'account:' || customer_key as record_id,
        'account' as record_type,
        min(source_system) as source_system,
        min(updated_at) as seen_at
    from {{ ref('stg_raw__customers') }}
    {{- identity_only_keys(keys, 'customers', 'customer_key') }}
    group by customer_key
),

-- an order with a customer_ref belongs to the account of that ref; all its lines share
-- the order's record
orders as (
    select
        order_id,
        min(source_system) as source_system,
        min(customer_ref) as customer_ref,
        min(ordered_at) as ordered_at
    from {{ ref('stg_raw__orders') }}
    {{- identity_only_keys(keys, 'orders', 'order_id') }}
    group by order_id
),

order_sources as (
    select
        'orders' as source_entity,
        order_id as source_key,
        case
            when customer_ref is not null then 'account:' || source_system || ':' || customer_ref
            else 'order:' || order_id
        end as record_id,
        case when customer_ref is not null then 'account' else 'order' end as record_type,
        source_system,
        ordered_at as seen_at
    from orders
),

ticket_sources as (
    select
        'service_events' as source_entity,
        ticket_id as source_key,
        'ticket:' || ticket_id as record_id,
        'ticket' as record_type,
        min(source_system) as source_system,
        min(event_at) as seen_at
    from {{ ref('stg_raw__service_events') }}
    {{- identity_only_keys(keys, 'service_events', 'ticket_id') }}
    group by ticket_id
),

social_sources as (
    select
        'social_interactions' as source_entity,
        social_account_key as source_key,
        'social:' || social_account_key as record_id,
        'social' as record_type,
        min(platform) as source_system,
        min(occurred_at) as seen_at
    from {{ ref('stg_raw__social_interactions') }}
    {{- identity_only_keys(keys, 'social_interactions', 'social_account_key') }}
    group by social_account_key
),

-- the four are disjoint (by source_entity)
record_sources as (
    select * from customer_sources
    union all
    select * from order_sources
    union all
    select * from ticket_sources
    union all
    select * from social_sources
)
{%- endmacro %}

{#- The plan of this build: namespace(materialized, incremental, work). `materialized`:
    the source rows of this build's keys are in the work table `<model>__rec_new` (every
    key on a whole build, the changed keys on an incremental one) and the post-hook keeps
    them; otherwise (Spark, unit tests, compile) the model computes them inline. On an
    incremental build, `__rec_keys` holds the changed keys and `__rec_touched` the touched
    records. -#}
{% macro identity_records_plan() -%}
    {%- set plan = namespace(materialized=false, incremental=false, work=none) -%}
    {%- if not identity_identifiers_materialized() -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set plan.materialized = true -%}
    {%- set plan.work = work_prefix('__rec_') -%}
    {%- set work = plan.work -%}
    {%- set reason = staged_keys_whole_reason(identity_records_fingerprint(), ['by_source']) -%}
    {{ drop_work_tables('__rec_', ['keys', 'touched']) }}
    {%- if reason is not none -%}
        {{ log("identity records: every source key computed (" ~ reason ~ ")", info=true) }}
        {%- do run_query('create or replace table ' ~ work ~ 'new as with ' ~ identity_record_source_ctes() ~ ' select * from record_sources') -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set plan.incremental = true -%}
    {%- set by_source = side_table('by_source') -%}
    {%- do run_query('create or replace table ' ~ work ~ 'keys as ' ~ staged_changed_keys_sql(side_table('build_log'))) -%}
    {%- do run_query('create or replace table ' ~ work ~ 'new as with ' ~ identity_record_source_ctes(work ~ 'keys') ~ ' select * from record_sources') -%}
    {%- set touched_sql -%}
        create or replace table {{ work }}touched as
        {{ records_of_changed_keys_sql(by_source, work) }}
    {%- endset -%}
    {%- do run_query(touched_sql) -%}
    {%- set counts = run_query(
        'select (select count(*) from ' ~ work ~ 'keys), (select count(*) from ' ~ work ~ 'touched), (select count(*) from ' ~ this ~ ')'
    ).rows[0] -%}
    {{ log("identity records: " ~ counts[0] ~ " source keys changed, recomputing " ~ counts[1] ~ " of " ~ counts[2] ~ " records", info=true) }}
    {{ return(plan) }}
{%- endmacro %}

{#- post-hook: keep the source rows and the staging state of this build and what it
    changed, drop the work tables. -#}
{% macro identity_records_finish() -%}
    {%- if identity_identifiers_materialized() -%}
        {%- set work = work_prefix('__rec_') -%}
        {%- set by_source = side_table('by_source') -%}
        {%- set present = work_tables_present('__rec_') -%}
        {%- set incremental = this.identifier ~ '__rec_touched' in present -%}
        {%- if incremental -%}
            {{ replace_kept_rows_of_changed_keys(by_source, work) }}
        {%- elif this.identifier ~ '__rec_new' in present -%}
            {%- do run_query('drop table if exists ' ~ by_source) -%}
            {%- do run_query('alter table ' ~ work ~ 'new rename to ' ~ by_source.identifier) -%}
        {%- endif -%}
        {%- do run_query('drop table if exists ' ~ side_table('changed_records')) -%}
        {%- if incremental -%}
            {%- do run_query('alter table ' ~ work ~ 'touched rename to ' ~ this.identifier ~ '__changed_records') -%}
        {%- endif -%}
        {{ keep_staged_changed_keys(work, incremental) }}
        {{ keep_build_record(incremental) }}
        {{ keep_staged_keys_state(identity_records_fingerprint()) }}
        {{ drop_work_tables('__rec_', ['keys', 'new', 'touched']) }}
    {%- endif -%}
{%- endmacro %}
