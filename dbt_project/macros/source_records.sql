{#- Incremental source records (int_source_records_resolved, DuckDB only; on Spark, in unit
    tests and when the model is only compiled it is computed whole).

    A source record's row (its record id and customer) changes only when
    - the source key has new staged rows (its record id is computed from them; a social
      interaction delivered again under another account also changes the account it left):
      those are the changed keys of an incremental build of int_identity_identifiers
      (`int_identity_identifiers__changed_keys`), or
    - the customer of its record changes: only the records an incremental build of
      int_identity_components_resolved recomputed or deleted
      (`int_identity_components_resolved__changed_records`) can change customer.
    An incremental build deletes the rows of those keys (pre-hook) and computes them again
    from the staging tables; the rest stays. It does so only when its last build read the
    identifiers and components builds just before the current ones (or the same ones):
    `<model>__last_build` records them (macros/build_records.sql). Otherwise (first build, --full-refresh, a whole
    build of either, either built more than once since, a change of the model or these
    macros) every source key is computed. The decision and the counts are printed in the
    dbt log. An incremental build keeps the keys it computed again in
    `<model>__changed_keys` (source_record_id, entity, the customer_id before and after the
    build; NULL where the key had no row, or has none now) for the customer-change log
    (int_source_records_logged, source_records_logged_scope) and the golden record
    (macros/golden_record.sql), which start from them. The work tables `<model>__sr_keys`
    and `__sr_old` are dropped by the post-hook. -#}

{#- namespace(incremental, keys): on an incremental build, `keys` is the work table of the
    (source_entity, source_key) computed again. -#}
{% macro source_records_plan() -%}
    {%- set plan = namespace(incremental=false, keys=none) -%}
    {%- if not identity_identifiers_materialized() -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set work = work_prefix('__sr_') -%}
    {{ drop_work_tables('__sr_', ['keys', 'old']) }}
    {%- set decision = upstreams_decision(
        sql_fingerprint(),
        [('int_identity_identifiers', ['changed_keys']), ('int_identity_components_resolved', ['changed_records'])]
    ) -%}
    {%- if decision.reason is not none -%}
        {#- the pre-hook deletes every row of an existing table -#}
        {{ log("source records: every source key computed (" ~ decision.reason ~ ")", info=true) }}
        {{ return(plan) }}
    {%- endif -%}
    {%- set parts = ['select cast(null as varchar) as source_entity, cast(null as varchar) as source_key where false'] -%}
    {%- if 'int_identity_identifiers' in decision.changed -%}
        {%- do parts.append(
            'select changed.source_entity, changed.source_key from '
            ~ side_table('changed_keys', ref('int_identity_identifiers')) ~ ' as changed'
        ) -%}
    {%- endif -%}
    {%- if 'int_identity_components_resolved' in decision.changed -%}
        {%- do parts.append(
            'select built.entity as source_entity, built.record_key as source_key from ' ~ this ~ ' as built'
            ~ ' where built.record_id in (select changed.record_id from '
            ~ side_table('changed_records', ref('int_identity_components_resolved')) ~ ' as changed)'
        ) -%}
    {%- endif -%}
    {%- do run_query('create table ' ~ work ~ 'keys as select distinct * from (' ~ parts | join(' union all ') ~ ') as changed') -%}
    {#- the rows the pre-hook deletes, for the customers before the build -#}
    {%- do run_query(
        'create table ' ~ work ~ 'old as select built.source_record_id, built.customer_id from ' ~ this ~ ' as built'
        ~ " where built.source_record_id in (select keys.source_entity || '/' || keys.source_key from " ~ work ~ 'keys as keys)'
    ) -%}
    {%- set plan.incremental = true -%}
    {%- set plan.keys = work ~ 'keys' -%}
    {%- set counts = run_query('select (select count(*) from ' ~ work ~ 'keys), (select count(*) from ' ~ this ~ ')').rows[0] -%}
    {{ log("source records: recomputing " ~ counts[0] ~ " source keys of " ~ counts[1], info=true) }}
    {{ return(plan) }}
{%- endmacro %}

{#- pre-hook: delete the rows this build computes again (all of them on a whole build of the
    existing table). -#}
{% macro source_records_prepare() -%}
    {{ delete_recomputed_rows(
        '__sr_', 'keys', 'source_record_id', "scoped.source_entity || '/' || scoped.source_key", identity_identifiers_materialized()
    ) }}
{%- endmacro %}

{#- post-hook: keep the keys this build computed again (incremental builds), record the
    build with the identifiers and components builds it read (none when it was not computed
    for real: the next build is whole), drop the work table. -#}
{% macro source_records_finish() -%}
    {%- if execute and target.type != 'spark' and model.resource_type != 'unit_test' -%}
        {%- set materialized = identity_identifiers_materialized() -%}
        {%- set work = work_prefix('__sr_') -%}
        {%- set changed = side_table('changed_keys') -%}
        {%- set incremental = materialized and this.identifier ~ '__sr_keys' in work_tables_present('__sr_') -%}
        {%- do run_query('drop table if exists ' ~ changed) -%}
        {%- if incremental -%}
            {%- set changed_sql -%}
                create table {{ changed }} as
                with keys as (
                    select keys.source_entity || '/' || keys.source_key as source_record_id, keys.source_entity as entity
                    from {{ work }}keys as keys
                )
                select keys.source_record_id, keys.entity, old.customer_id as old_customer_id, built.customer_id
                from keys
                left join {{ work }}old as old on keys.source_record_id = old.source_record_id
                left join {{ this }} as built on keys.source_record_id = built.source_record_id
            {%- endset -%}
            {%- do run_query(changed_sql) -%}
        {%- endif -%}
        {{ keep_build_record(
            incremental, sql_fingerprint(), ['int_identity_identifiers', 'int_identity_components_resolved'],
            materialized
        ) }}
        {{ drop_work_tables('__sr_', ['keys', 'old']) }}
    {%- endif -%}
{%- endmacro %}

{#- The customer-change log (int_source_records_logged) compares each source record's
    customer with the one it logged. An incremental build of int_source_records_resolved
    rewrites only the keys in its `__changed_keys`; every other row is as it was when the
    log last compared it. When the source records were built exactly once since the log's
    last build (`<model>__last_build` records which build it read), the log compares only
    those keys; when they were not built since, none; otherwise (first build,
    --full-refresh, a whole build of the source records, built more than once since, a
    change of the model or these macros) every record. -#}

{#- A query of the source_record_id to compare, or none (every record). -#}
{% macro source_records_logged_scope() -%}
    {%- if not identity_identifiers_materialized() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set own = own_build_decision(sql_fingerprint()) -%}
    {%- set change = own.reason if own.reason is not none else upstream_change(
        'int_source_records_resolved', own.kept.read.get('int_source_records_resolved'), ['changed_keys']
    ) -%}
    {%- if change == 'unchanged' -%}
        {{ log("customer-change log: comparing 0 source records (int_source_records_resolved not built since)", info=true) }}
        {{ return('select cast(null as varchar) as source_record_id where false') }}
    {%- elif change != 'changes' -%}
        {{ log("customer-change log: every source record compared (" ~ change ~ ")", info=true) }}
        {{ return(none) }}
    {%- endif -%}
    {%- set changed = side_table('changed_keys', ref('int_source_records_resolved')) -%}
    {%- set count = run_query('select count(*) from ' ~ changed).rows[0][0] -%}
    {{ log("customer-change log: comparing " ~ count ~ " source records", info=true) }}
    {{ return('select changed.source_record_id from ' ~ changed ~ ' as changed') }}
{%- endmacro %}

{#- post-hook: record the build and the source records build it read. -#}
{% macro source_records_logged_finish() -%}
    {%- if execute and target.type != 'spark' and model.resource_type != 'unit_test' -%}
        {{ keep_build_record(
            false, sql_fingerprint(), ['int_source_records_resolved'], identity_identifiers_materialized()
        ) }}
    {%- endif -%}
{%- endmacro %}
