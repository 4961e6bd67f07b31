{#- Incremental identity identifiers (int_identity_identifiers, DuckDB only; on Spark, in
    unit tests and when the model is only compiled it is computed whole from the CTEs of
    identity_source_identifier_ctes).

    A record's identifiers come from its "source keys": a customer account (customer_key),
    an order (order_id), a ticket (ticket_id), a social account (social_account_key). A
    build keeps every (source key, record, identifier) in `<model>__by_source` (restricted
    store, clear values) and the staging state it read in `<model>__build_log`; the next
    build takes the source keys with a staged row new since that state
    (macros/staged_keys.sql), recomputes their identifiers from staging, and "touches" the
    records those keys belong to now and belonged to then (an order whose customer_ref
    changed leaves its old record, a social account an interaction left). A touched record's identifiers are those of all its source keys;
    every identifier value a touched record holds or held is counted again over all its
    holders (a value that gains its 21st holder flags every holder's row as a super-node),
    and the holders' rows are rewritten. The rest keeps its rows.

    A record's first-seen month (int_identity_records) places it in the monthly counts:
    `<model>__records_seen` keeps the month each record was counted in, and a record whose
    month is not that one any more is touched too (it covers a build of this model without
    int_identity_records rebuilt beside it: its new records have no month yet and are
    counted once they have one). Only the records int_identity_records changed since the
    build this model read last are compared, when it was built once since and kept them
    (macros/build_records.sql), and none when it was not built since. The changed keys are
    those int_identity_records found in the same dbt invocation when both started from the
    same staging state (macro staged_keys_found_by).

    The build is whole (every key) in the cases of macros/staged_keys.sql, and when
    int_identity_records changed. The decision and the counts
    are printed in the dbt log. Work tables `<model>__id_*` are dropped by the post-hook. -#}

{#- Whether this invocation builds the model for real with DuckDB: not compiled only
    (`dbt compile`, `dbt docs generate`), not a unit test, not `--empty` / `--sample`
    (whose refs read no or some rows), not Spark. -#}
{% macro identity_identifiers_materialized() -%}
    {{ return(execute and target.type != 'spark' and model.resource_type != 'unit_test'
        and flags.WHICH in ['run', 'build'] and not flags.EMPTY and not flags.SAMPLE) }}
{%- endmacro %}

{#- What the rows depend on besides the staged rows: the SQL of the model and of
    int_identity_records with the macros they call (sql_fingerprint), the source
    identifiers' SQL as rendered, and the settings the SQL reads. -#}
{% macro identity_identifiers_fingerprint() -%}
    {%- set records = graph.nodes.get('model.' ~ project_name ~ '.int_identity_records') -%}
    {{ return(sql_fingerprint() ~ '|' ~ (sql_fingerprint(records) if records else '') ~ '|'
        ~ local_md5(identity_source_identifier_ctes()) ~ '|'
        ~ var('supernode_threshold') ~ '|' ~ customer_ref_system_fingerprint() ~ '|'
        ~ var('business_timezone')) }}
{%- endmacro %}

{#- The CTEs that compute (source_entity, source_key, record_id, identifier_type,
    identifier_value) from staging, ending with `source_identifiers`. With `keys` (a
    relation of source_entity, source_key) only for those keys. -#}
{% macro identity_source_identifier_ctes(keys=none) -%}
customers as (
    select
        customer_key,
        phone,
        email,
        unionid
    from {{ ref('stg_raw__customers') }}
    {{- identity_only_keys(keys, 'customers', 'customer_key') }}
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
    from {{ ref('stg_raw__orders') }}
    {{- identity_only_keys(keys, 'orders', 'order_id') }}
),

ticket_requesters as (
    select distinct
        ticket_id,
        -- the system of the customer_ref: the help desk mapping's customer_ref_system
        {{ customer_ref_system('source_name') }} as customer_ref_system,
        customer_ref,
        phone,
        email,
        social_account_id
    from {{ ref('stg_raw__service_events') }}
    {{- identity_only_keys(keys, 'service_events', 'ticket_id') }}
),

social_accounts as (
    select distinct
        social_account_key,
        account_id,
        unionid,
        phone
    from {{ ref('stg_raw__social_interactions') }}
    {{- identity_only_keys(keys, 'social_interactions', 'social_account_key') }}
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
    select distinct
        'customers' as source_entity,
        customer_key as source_key,
        'account:' || customer_key as record_id,
        identifier_type,
        identifier_value
    from (
        select
            customer_key,
            'account' as identifier_type,
            customer_key as identifier_value
        from customers
        union all
        select
            customer_key,
            'phone' as identifier_type,
            phone as identifier_value
        from customers
        union all
        select
            customer_key,
            'email' as identifier_type,
            email as identifier_value
        from customers
        union all
        select
            customer_key,
            'unionid' as identifier_type,
            unionid as identifier_value
        from customers
    ) as unpivoted
    where identifier_value is not null and customer_key is not null
),

order_identifiers as (
    select distinct
        'orders' as source_entity,
        unpivoted.order_id as source_key,
        order_record_ids.record_id,
        unpivoted.identifier_type,
        unpivoted.identifier_value
    from (
        select
            order_id,
            'account' as identifier_type,
            source_system || ':' || customer_ref as identifier_value
        from order_buyers
        union all
        select
            order_id,
            'phone' as identifier_type,
            buyer_phone as identifier_value
        from order_buyers
        union all
        select
            order_id,
            'email' as identifier_type,
            buyer_email as identifier_value
        from order_buyers
    ) as unpivoted
    inner join order_record_ids on unpivoted.order_id = order_record_ids.order_id
    where unpivoted.identifier_value is not null and unpivoted.order_id is not null
),

ticket_identifiers as (
    select distinct
        'service_events' as source_entity,
        ticket_id as source_key,
        'ticket:' || ticket_id as record_id,
        identifier_type,
        identifier_value
    from (
        select
            ticket_id,
            'account' as identifier_type,
            customer_ref_system || ':' || customer_ref as identifier_value
        from ticket_requesters
        union all
        select
            ticket_id,
            'phone' as identifier_type,
            phone as identifier_value
        from ticket_requesters
        union all
        select
            ticket_id,
            'email' as identifier_type,
            email as identifier_value
        from ticket_requesters
        union all
        select
            ticket_id,
            'social' as identifier_type,
            -- 'wechat:o6_x' and 'o6_x' both name the account o6_x
            {{ regex_replace_all('social_account_id', "'^(wechat|weibo|douyin|xiaohongshu|mini_program):'", "''") }} as identifier_value
        from ticket_requesters
    ) as unpivoted
    where identifier_value is not null and ticket_id is not null
),

social_identifiers as (
    select distinct
        'social_interactions' as source_entity,
        social_account_key as source_key,
        'social:' || social_account_key as record_id,
        identifier_type,
        identifier_value
    from (
        select
            social_account_key,
            'social' as identifier_type,
            account_id as identifier_value
        from social_accounts
        union all
        select
            social_account_key,
            'unionid' as identifier_type,
            unionid as identifier_value
        from social_accounts
        union all
        select
            social_account_key,
            'phone' as identifier_type,
            phone as identifier_value
        from social_accounts
    ) as unpivoted
    where identifier_value is not null and social_account_key is not null
),

-- the four are disjoint (by source_entity): no distinct over their union
source_identifiers as (
    select * from customer_identifiers
    union all
    select * from order_identifiers
    union all
    select * from ticket_identifiers
    union all
    select * from social_identifiers
)
{%- endmacro %}

{% macro identity_only_keys(keys, entity, column) -%}
    {%- if keys is not none %}
    where {{ column }} in (select keys.source_key from {{ keys }} as keys where keys.source_entity = '{{ entity }}')
    {%- endif -%}
{%- endmacro %}

{#- The plan of this build: namespace(materialized, incremental, work). `materialized`:
    the source identifiers of this build are in the work table `<model>__id_new` (every
    key on a whole build, the changed keys on an incremental one) and the post-hook keeps
    them; otherwise (Spark, unit tests, compile) the model computes them inline. On an
    incremental build, `__id_touched` holds the touched records and `__id_rows` their
    (record, identifier type, value) rows as of now. -#}
{% macro identity_identifiers_plan() -%}
    {%- set plan = namespace(materialized=false, incremental=false, work=none) -%}
    {%- if not identity_identifiers_materialized() -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set plan.materialized = true -%}
    {%- set plan.work = work_prefix('__id_') -%}
    {%- set reason = staged_keys_whole_reason(identity_identifiers_fingerprint(), ['by_source', 'records_seen']) -%}
    {%- if reason is not none -%}
        {{ log("identity identifiers: every source key computed (" ~ reason ~ ")", info=true) }}
        {{ drop_work_tables('__id_', ['keys', 'touched', 'rows', 'values', 'replace']) }}
        {%- if is_incremental() -%}
            {#- the post-hook deletes the records of the table that have no identifier now -#}
            {%- do run_query('create table ' ~ plan.work ~ 'replace as select 1 as whole') -%}
        {%- endif -%}
        {%- do run_query('create or replace table ' ~ plan.work ~ 'new as with ' ~ identity_source_identifier_ctes() ~ ' select * from source_identifiers') -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set plan.incremental = true -%}
    {%- set work = plan.work -%}
    {%- do run_query('drop table if exists ' ~ work ~ 'replace') -%}
    {%- set by_source = side_table('by_source') -%}
    {%- set found = staged_keys_found_by('int_identity_records') -%}
    {%- set keys_sql = ('select found.source_entity, found.source_key from ' ~ found ~ ' as found') if found is not none else staged_changed_keys_sql(side_table('build_log')) -%}
    {%- do run_query('create or replace table ' ~ work ~ 'keys as ' ~ keys_sql) -%}
    {%- do run_query('create or replace table ' ~ work ~ 'new as with ' ~ identity_source_identifier_ctes(work ~ 'keys') ~ ' select * from source_identifiers') -%}
    {#- A record's first-seen month can differ from the one the last build counted only if
        int_identity_records was built since: then only among the records that build
        changed, when it was built once and kept them. -#}
    {%- set own = build_record() -%}
    {%- set records_change = upstream_change('int_identity_records', own.read.get('int_identity_records') if own else none, ['changed_records']) -%}
    {%- set touched_sql -%}
        create or replace table {{ work }}touched as
        {{ records_of_changed_keys_sql(by_source, work) }}
        {%- if records_change != 'unchanged' %}
        union
        -- records whose first-seen month is not the one the last build counted them in
        select seen.record_id
        from {{ side_table('records_seen') }} as seen
        left join {{ ref('int_identity_records') }} as records on seen.record_id = records.record_id
        where seen.first_seen_month is distinct from {{ month_start('records.first_seen_date') }}
        {%- if records_change == 'changes' %}
            and seen.record_id in (
                select changed.record_id
                from {{ side_table('changed_records', ref('int_identity_records')) }} as changed
            )
        {%- endif %}
        {%- endif %}
    {%- endset -%}
    {%- do run_query(touched_sql) -%}
    {%- set rows_sql -%}
        create or replace table {{ work }}rows as
        select distinct record_id, identifier_type, identifier_value
        from (
            select kept.record_id, kept.identifier_type, kept.identifier_value
            from {{ by_source }} as kept
            where
                kept.record_id in (select touched.record_id from {{ work }}touched as touched)
                and not {{ is_changed_key(work ~ 'keys') }}
            union all
            select new.record_id, new.identifier_type, new.identifier_value
            from {{ work }}new as new
        ) as current_rows
    {%- endset -%}
    {%- do run_query(rows_sql) -%}
    {#- every value a touched record holds or held: counted again over all its holders -#}
    {%- set values_sql -%}
        create or replace table {{ work }}values as
        select touched_rows.identifier_type, touched_rows.identifier_value
        from {{ work }}rows as touched_rows
        union
        select built.identifier_type, built.identifier_value
        from {{ this }} as built
        where built.record_id in (select touched.record_id from {{ work }}touched as touched)
    {%- endset -%}
    {%- do run_query(values_sql) -%}
    {#- the records of the last build: one row each in `__records_seen` (a count of the
        distinct records of `__by_source` took 5 s at large) -#}
    {%- set counts = run_query(
        'select (select count(*) from ' ~ work ~ 'keys), (select count(*) from ' ~ work ~ 'touched), (select count(*) from '
        ~ side_table('records_seen') ~ ')'
    ).rows[0] -%}
    {{ log("identity identifiers: " ~ counts[0] ~ " source keys changed (" ~ ("those int_identity_records found" if found is not none else "found from the staging state kept") ~ "; first-seen months compared: " ~ {'unchanged': 'none, int_identity_records not built since', 'changes': 'of the records int_identity_records changed'}.get(records_change, 'every record') ~ "), recomputing " ~ counts[1] ~ " of " ~ counts[2] ~ " records (and the holders of their values)", info=true) }}
    {{ return(plan) }}
{%- endmacro %}

{#- (record_id, first_seen_month) of the records in `relation` (int_identity_records'
    month; NULL for a record it does not hold, e.g. when it was not rebuilt with the
    staging tables): the months the counts of the build used. -#}
{% macro identity_identifiers_seen_sql(relation) -%}
    select
        built.record_id,
        {{ month_start('records.first_seen_date') }} as first_seen_month
    from (select distinct source_rows.record_id from {{ relation }} as source_rows) as built
    left join {{ ref('int_identity_records') }} as records on built.record_id = records.record_id
{%- endmacro %}

{#- post-hook: delete the touched records left without identifiers, keep the source
    identifiers and the staging state of this build, drop the work tables. -#}
{% macro identity_identifiers_finish() -%}
    {%- if identity_identifiers_materialized() -%}
        {%- set work = work_prefix('__id_') -%}
        {%- set by_source = side_table('by_source') -%}
        {%- set seen = side_table('records_seen') -%}
        {%- set present = work_tables_present('__id_') -%}
        {%- if this.identifier ~ '__id_touched' in present -%}
            {#- the touched records the model wrote no row for (no identifier now, or not
                in int_identity_records): delete+insert left their old rows -#}
            {%- do run_query(
                'delete from ' ~ this ~ ' where record_id in (select touched.record_id from ' ~ work ~ 'touched as touched)'
                ~ ' and record_id not in (select current_rows.record_id from ' ~ work ~ 'rows as current_rows'
                ~ ' inner join ' ~ ref('int_identity_records') ~ ' as records on current_rows.record_id = records.record_id)'
            ) -%}
            {%- do run_query(
                'delete from ' ~ seen ~ ' where record_id in (select touched.record_id from ' ~ work ~ 'touched as touched)'
            ) -%}
            {%- do run_query(
                'insert into ' ~ seen ~ ' ' ~ identity_identifiers_seen_sql(work ~ 'rows')
            ) -%}
            {{ replace_kept_rows_of_changed_keys(by_source, work) }}
        {%- elif this.identifier ~ '__id_new' in present -%}
            {%- if this.identifier ~ '__id_replace' in present -%}
                {%- do run_query(
                    'delete from ' ~ this ~ ' where record_id not in (select new.record_id from ' ~ work ~ 'new as new'
                    ~ ' inner join ' ~ ref('int_identity_records') ~ ' as records on new.record_id = records.record_id)'
                ) -%}
            {%- endif -%}
            {%- do run_query('create or replace table ' ~ seen ~ ' as ' ~ identity_identifiers_seen_sql(work ~ 'new')) -%}
            {%- do run_query('drop table if exists ' ~ by_source) -%}
            {%- do run_query('alter table ' ~ work ~ 'new rename to ' ~ by_source.identifier) -%}
        {%- endif -%}
        {{ identity_identifiers_keep_changes(this.identifier ~ '__id_touched' in present) }}
        {{ keep_staged_keys_state(identity_identifiers_fingerprint()) }}
        {{ drop_work_tables('__id_', ['keys', 'new', 'touched', 'rows', 'values', 'replace']) }}
    {%- endif -%}
{%- endmacro %}

{#- What this build changed, for int_identity_edges (macros/identity_edges.sql) and
    int_source_records_resolved (macros/source_records.sql): the build's record in
    `<model>__last_build` (macros/build_records.sql; has_changes on an incremental build)
    and, on an incremental build, the source keys with new staged rows
    (`<model>__changed_keys`: source_entity, source_key), the touched records
    (`<model>__changed_records`) and every value they hold or held
    (`<model>__changed_values`). Outside those records and the holders of those values,
    the build left every row as it was. Part of the post-hook; the work tables are still
    there. -#}
{% macro identity_identifiers_keep_changes(incremental) -%}
    {%- set work = work_prefix('__id_') -%}
    {%- for name in ['keys', 'records', 'values'] -%}
        {%- do run_query('drop table if exists ' ~ side_table('changed_' ~ name)) -%}
    {%- endfor -%}
    {%- if incremental -%}
        {%- do run_query('alter table ' ~ work ~ 'keys rename to ' ~ this.identifier ~ '__changed_keys') -%}
        {%- do run_query('alter table ' ~ work ~ 'touched rename to ' ~ this.identifier ~ '__changed_records') -%}
        {%- do run_query('alter table ' ~ work ~ 'values rename to ' ~ this.identifier ~ '__changed_values') -%}
    {%- endif -%}
    {{ keep_build_record(incremental, read=['int_identity_records']) }}
{%- endmacro %}
