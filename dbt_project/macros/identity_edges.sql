{#- Incremental identity edges (int_identity_edges, DuckDB only; on Spark, in unit tests
    and when the model is only compiled it is computed whole).

    An incremental build of int_identity_identifiers rewrites the rows of the records it
    touched and of every holder of a value they hold or held (the counts and the
    super-node flag of those values); it keeps what it touched in
    `int_identity_identifiers__changed_records` / `__changed_values` and the build's record
    in `__last_build` (macro identity_identifiers_keep_changes, macros/build_records.sql). Every other record holds the
    same usable values as before, each with the same holders, so its edges (to the
    smallest holder of each value) are unchanged. An incremental build here deletes the
    edges from the touched records and from the current holders of the changed values
    (pre-hook) and computes theirs again; the rest stays.

    That holds only when this model's last build read the identifiers build just before
    the current one: `<model>__last_build` records the identifiers build it read.
    The build is whole (every edge) on a first build or --full-refresh, when the model or
    these macros changed, when the identifiers build was whole, or when the identifiers
    were built more than once since (e.g. `dbt run --select int_identity_identifiers`
    alone). When the identifiers were not built since, nothing is recomputed. The decision
    and the counts are printed in the dbt log.

    Each build on an existing table also keeps the edges that appeared or disappeared in
    `<model>__changes` (from_record_id, to_record_id): those from the recomputed records
    on an incremental build, all of them on a whole one; int_identity_components_resolved
    reads them. `<model>__last_build` records the build (macros/build_records.sql).
    Work tables `<model>__ed_records` / `__ed_old` are dropped by the post-hook. -#}

{#- Whether this build computes the edges for real with DuckDB (as for the identifiers). -#}
{% macro identity_edges_materialized() -%}
    {{ return(identity_identifiers_materialized()) }}
{%- endmacro %}

{#- namespace(incremental, work): on an incremental build, `<work>records` holds the
    records whose edges are recomputed. -#}
{% macro identity_edges_plan() -%}
    {%- set plan = namespace(incremental=false, work=none) -%}
    {%- if not identity_edges_materialized() -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set work = work_prefix('__ed_') -%}
    {%- set plan.work = work -%}
    {{ drop_work_tables('__ed_', ['records', 'old']) }}
    {%- set decision = identity_edges_decision() -%}
    {%- if decision != 'incremental' and decision != 'unchanged' -%}
        {#- the pre-hook deletes every edge of an existing table; the post-hook compares
            them with the new ones -#}
        {%- if is_incremental() -%}
            {%- do run_query('create table ' ~ work ~ 'old as select built.from_record_id, built.to_record_id from ' ~ this ~ ' as built') -%}
        {%- endif -%}
        {{ log("identity edges: every edge computed (" ~ decision ~ ")", info=true) }}
        {{ return(plan) }}
    {%- endif -%}
    {%- set plan.incremental = true -%}
    {%- if decision == 'unchanged' -%}
        {%- do run_query('create table ' ~ work ~ 'records (record_id varchar)') -%}
        {%- set values_changed = 0 -%}
    {%- else -%}
        {%- set changed_values = side_table('changed_values', ref('int_identity_identifiers')) -%}
        {%- set records_sql -%}
            create table {{ work }}records as
            select changed.record_id
            from {{ side_table('changed_records', ref('int_identity_identifiers')) }} as changed
            union
            select identifiers.record_id
            from {{ ref('int_identity_identifiers') }} as identifiers
            inner join {{ changed_values }} as changed_values
                on identifiers.identifier_type = changed_values.identifier_type
                    and identifiers.identifier_value = changed_values.identifier_value
        {%- endset -%}
        {%- do run_query(records_sql) -%}
        {%- set values_changed = run_query('select count(*) from ' ~ changed_values).rows[0][0] -%}
    {%- endif -%}
    {#- the edges deleted by the pre-hook, for the post-hook's comparison -#}
    {%- do run_query(
        'create table ' ~ work ~ 'old as select built.from_record_id, built.to_record_id from ' ~ this
        ~ ' as built where built.from_record_id in (select scoped.record_id from ' ~ work ~ 'records as scoped)'
    ) -%}
    {%- set counts = run_query('select (select count(*) from ' ~ work ~ 'records), (select count(*) from ' ~ this ~ ')').rows[0] -%}
    {{ log("identity edges: recomputing the edges of " ~ counts[0] ~ " records (" ~ values_changed ~ " identifier values changed); " ~ counts[1] ~ " edges before", info=true) }}
    {{ return(plan) }}
{%- endmacro %}

{#- 'incremental', 'unchanged' (the identifiers were not built since), or why every edge is
    computed. -#}
{% macro identity_edges_decision() -%}
    {%- set own = own_build_decision(sql_fingerprint()) -%}
    {%- if own.reason is not none -%}
        {{ return(own.reason) }}
    {%- endif -%}
    {%- set change = upstream_change(
        'int_identity_identifiers', own.kept.read.get('int_identity_identifiers'), ['changed_records', 'changed_values']
    ) -%}
    {{ return('incremental' if change == 'changes' else change) }}
{%- endmacro %}

{#- pre-hook: delete the edges this build computes again (all of them on a whole build of
    the existing table). -#}
{% macro identity_edges_prepare() -%}
    {{ delete_recomputed_rows('__ed_', 'records', 'from_record_id', 'scoped.record_id', identity_edges_materialized()) }}
{%- endmacro %}

{#- post-hook: keep the edges that appeared or disappeared (when the table existed before),
    record the build and the identifiers build it read (none when the edges were not
    computed for real: the next build is whole), drop the work tables. -#}
{% macro identity_edges_finish() -%}
    {%- if execute and target.type != 'spark' and model.resource_type != 'unit_test' -%}
        {%- set work = work_prefix('__ed_') -%}
        {%- set materialized = identity_edges_materialized() -%}
        {%- set present = work_tables_present('__ed_') if materialized else [] -%}
        {%- set changes = side_table('changes') -%}
        {%- do run_query('drop table if exists ' ~ changes) -%}
        {%- set kept_changes = this.identifier ~ '__ed_old' in present -%}
        {%- if kept_changes -%}
            {%- set new_edges_sql -%}
                select built.from_record_id, built.to_record_id from {{ this }} as built
                {%- if this.identifier ~ '__ed_records' in present %}
                where built.from_record_id in (select scoped.record_id from {{ work }}records as scoped)
                {%- endif %}
            {%- endset -%}
            {%- do run_query(
                'create table ' ~ changes ~ ' as (' ~ new_edges_sql ~ ' except select * from ' ~ work ~ 'old)'
                ~ ' union all (select * from ' ~ work ~ 'old except ' ~ new_edges_sql ~ ')'
            ) -%}
        {%- endif -%}
        {{ keep_build_record(kept_changes, sql_fingerprint(), ['int_identity_identifiers'], materialized) }}
        {{ drop_work_tables('__ed_', ['records', 'old']) }}
    {%- endif -%}
{%- endmacro %}
