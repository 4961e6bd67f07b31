{#- Incremental int_customers_resolved (DuckDB only; on Spark, in unit tests and when the
    model is only compiled it is computed whole).

    A row (a record, its customer and its customer's number of records) changes only when
    - the record's own row changes, appears or disappears: the records an incremental build
      of int_identity_records touched (`int_identity_records__changed_records`), or
    - its component changes: the records an incremental build of
      int_identity_components_resolved recomputed or deleted
      (`int_identity_components_resolved__changed_records`), or
    - its customer gains or loses a record: the customers, before and after, of the records
      above.
    An incremental build deletes the rows of those records and of every record of those
    customers (pre-hook) and computes them again; every customer it computes has all its
    records in that scope, so its count is exact. The rest stays. It does so only when its
    last build read the records and components builds just before the current ones (or the
    same ones): `<model>__last_build` records them (macros/build_records.sql). Otherwise
    (first build, --full-refresh, a whole build of either, either built more than once
    since, a change of the model or these macros) every record is computed. The decision
    and the counts are printed in the dbt log. The work tables `<model>__cr_records` and
    `__cr_scope` are dropped by the post-hook. -#}

{% macro customers_resolved_upstreams() -%}
    {{ return(['int_identity_records', 'int_identity_components_resolved']) }}
{%- endmacro %}

{#- namespace(incremental, scope): on an incremental build, `scope` is the work table of the
    record_id computed again. -#}
{% macro customers_resolved_plan() -%}
    {%- set plan = namespace(incremental=false, scope=none) -%}
    {%- if not identity_identifiers_materialized() -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set work = work_prefix('__cr_') -%}
    {{ drop_work_tables('__cr_', ['records', 'scope']) }}
    {%- set upstreams = [] -%}
    {%- for model_name in customers_resolved_upstreams() -%}
        {%- do upstreams.append((model_name, ['changed_records'])) -%}
    {%- endfor -%}
    {%- set decision = upstreams_decision(sql_fingerprint(), upstreams) -%}
    {%- if decision.reason is not none -%}
        {#- the pre-hook deletes every row of an existing table -#}
        {{ log("customers resolved: every record computed (" ~ decision.reason ~ ")", info=true) }}
        {{ return(plan) }}
    {%- endif -%}
    {%- set parts = ['select cast(null as varchar) as record_id where false'] -%}
    {%- for model_name in decision.changed -%}
        {%- do parts.append('select changed.record_id from ' ~ side_table('changed_records', ref(model_name)) ~ ' as changed') -%}
    {%- endfor -%}
    {%- do run_query('create table ' ~ work ~ 'records as select distinct * from (' ~ parts | join(' union all ') ~ ') as changed') -%}
    {%- set components = ref('int_identity_components_resolved') -%}
    {%- set scope_sql -%}
        create table {{ work }}scope as
        with
        changed_customers as (
            select built.customer_id
            from {{ this }} as built
            where built.record_id in (select changed.record_id from {{ work }}records as changed)
                and built.customer_id is not null
            union
            select components.customer_id
            from {{ components }} as components
            where components.record_id in (select changed.record_id from {{ work }}records as changed)
        )
        select changed.record_id from {{ work }}records as changed
        union
        select components.record_id
        from {{ components }} as components
        where components.customer_id in (select changed_customers.customer_id from changed_customers)
    {%- endset -%}
    {%- do run_query(scope_sql) -%}
    {%- set plan.incremental = true -%}
    {%- set plan.scope = work ~ 'scope' -%}
    {%- set counts = run_query('select (select count(*) from ' ~ work ~ 'scope), (select count(*) from ' ~ this ~ ')').rows[0] -%}
    {{ log("customers resolved: recomputing " ~ counts[0] ~ " records of " ~ counts[1], info=true) }}
    {{ return(plan) }}
{%- endmacro %}

{#- ` where record_id in (<scope>)` on an incremental build, else nothing. -#}
{% macro customers_resolved_only_scope(plan) -%}
    {%- if plan.incremental %}
    where record_id in (select scope.record_id from {{ plan.scope }} as scope)
    {%- endif -%}
{%- endmacro %}

{#- post-hook: record the build with the records and components builds it read (none when
    it was not computed for real: the next build is whole), drop the work tables. -#}
{% macro customers_resolved_finish() -%}
    {%- if execute and target.type != 'spark' and model.resource_type != 'unit_test' -%}
        {{ keep_build_record(
            false, sql_fingerprint(), customers_resolved_upstreams(),
            identity_identifiers_materialized()
        ) }}
        {{ drop_work_tables('__cr_', ['records', 'scope']) }}
    {%- endif -%}
{%- endmacro %}
