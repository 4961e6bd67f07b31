{#- Incremental identity edges (int_identity_edges, DuckDB only; on Spark, in unit tests
    and when the model is only compiled it is computed whole).

    An incremental build of int_identity_identifiers rewrites the rows of the records it
    touched and of every holder of a value they hold or held (the counts and the
    super-node flag of those values); it keeps what it touched in
    `int_identity_identifiers__changed_records` / `__changed_values` and the build's id in
    `__last_build` (macro identity_identifiers_keep_changes). Every other record holds the
    same usable values as before, each with the same holders, so its edges (to the
    smallest holder of each value) are unchanged. An incremental build here deletes the
    edges from the touched records and from the current holders of the changed values
    (pre-hook) and computes theirs again; the rest stays.

    That holds only when this model's last build read the identifiers build just before
    the current one: `<model>__last_build` keeps the id of the identifiers build it read.
    The build is whole (every edge) on a first build or --full-refresh, when the model or
    these macros changed, when the identifiers build was whole, or when the identifiers
    were built more than once since (e.g. `dbt run --select int_identity_identifiers`
    alone). When the identifiers were not built since, nothing is recomputed. The decision
    and the counts are printed in the dbt log.

    Each build on an existing table also keeps the edges that appeared or disappeared in
    `<model>__changes` (from_record_id, to_record_id): those from the recomputed records
    on an incremental build, all of them on a whole one; int_identity_components_resolved
    reads them. `<model>__last_build` holds the build's id (the dbt invocation), the id of
    the build before it, whether the changes were kept, and the identifiers build it read.
    Work tables `<model>__ed_records` / `__ed_old` are dropped by the post-hook. -#}

{#- Bump when the SQL of these macros changes what a build computes. -#}
{% macro identity_edges_version() -%}
    {{ return('1') }}
{%- endmacro %}

{#- Whether this build computes the edges for real with DuckDB (as for the identifiers). -#}
{% macro identity_edges_materialized() -%}
    {{ return(identity_identifiers_materialized()) }}
{%- endmacro %}

{% macro identity_edges_fingerprint() -%}
    {{ return(model.checksum.checksum ~ '|' ~ identity_edges_version()) }}
{%- endmacro %}

{#- A side table of int_identity_identifiers (restricted store). -#}
{% macro identity_edges_identifiers_side(name) -%}
    {%- set identifiers = ref('int_identity_identifiers') -%}
    {{ return(api.Relation.create(database=identifiers.database, schema=identifiers.schema, identifier=identifiers.identifier ~ '__' ~ name)) }}
{%- endmacro %}

{#- A side table of this model. -#}
{% macro identity_edges_side(name) -%}
    {{ return(api.Relation.create(database=this.database, schema=this.schema, identifier=this.identifier ~ '__' ~ name)) }}
{%- endmacro %}

{#- The id of the last identifiers build, or none. -#}
{% macro identity_edges_identifiers_build() -%}
    {%- set last = identity_edges_identifiers_side('last_build') -%}
    {%- if not relation_exists_now(last) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set rows = run_query('select build_id, base_build_id, is_whole from ' ~ last).rows -%}
    {{ return(rows[0] if rows | length == 1 else none) }}
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
    {%- for name in ['records', 'old'] -%}
        {%- do run_query('drop table if exists ' ~ work ~ name) -%}
    {%- endfor -%}
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
        {%- set changed_values = identity_edges_identifiers_side('changed_values') -%}
        {%- set records_sql -%}
            create table {{ work }}records as
            select changed.record_id
            from {{ identity_edges_identifiers_side('changed_records') }} as changed
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
    {%- if not is_incremental() -%}
        {{ return('full refresh' if flags.FULL_REFRESH else 'first build') }}
    {%- endif -%}
    {%- set last = identity_edges_side('last_build') -%}
    {%- if not relation_exists_now(last) -%}
        {{ return('no earlier build kept') }}
    {%- endif -%}
    {%- set kept = run_query('select identifiers_build_id, fingerprint from ' ~ last).rows -%}
    {%- if kept | length != 1 or kept[0][1] != identity_edges_fingerprint() -%}
        {{ return('the model or its macros changed') }}
    {%- endif -%}
    {%- set identifiers = identity_edges_identifiers_build() -%}
    {%- if identifiers is none or kept[0][0] is none -%}
        {{ return('no build of int_identity_identifiers recorded') }}
    {%- endif -%}
    {%- if identifiers[0] == kept[0][0] -%}
        {{ return('unchanged') }}
    {%- endif -%}
    {%- if identifiers[1] != kept[0][0] -%}
        {{ return('int_identity_identifiers was built more than once since') }}
    {%- endif -%}
    {%- if identifiers[2] -%}
        {{ return('int_identity_identifiers was built whole') }}
    {%- endif -%}
    {%- if not relation_exists_now(identity_edges_identifiers_side('changed_records'))
        or not relation_exists_now(identity_edges_identifiers_side('changed_values')) -%}
        {{ return('the changes of int_identity_identifiers are not kept') }}
    {%- endif -%}
    {{ return('incremental') }}
{%- endmacro %}

{#- pre-hook: delete the edges this build computes again (all of them on a whole build of
    the existing table). -#}
{% macro identity_edges_prepare() -%}
    {%- if execute and target.type != 'spark' and is_incremental() -%}
        {%- set present = work_tables_present('__ed_') if identity_edges_materialized() else [] -%}
        {%- if this.identifier ~ '__ed_records' in present -%}
            delete from {{ this }} where from_record_id in (select scoped.record_id from {{ work_prefix('__ed_') }}records as scoped)
        {%- else -%}
            delete from {{ this }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- post-hook: keep the edges that appeared or disappeared (when the table existed before),
    the id of this build and of the identifiers build it read (none when the edges were
    not computed for real: the next build is whole), drop the work tables. -#}
{% macro identity_edges_finish() -%}
    {%- if execute and target.type != 'spark' and model.resource_type != 'unit_test' -%}
        {%- set work = work_prefix('__ed_') -%}
        {%- set materialized = identity_edges_materialized() -%}
        {%- set present = work_tables_present('__ed_') if materialized else [] -%}
        {%- set changes = identity_edges_side('changes') -%}
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
        {%- set last = identity_edges_side('last_build') -%}
        {%- do run_query(
            'create table if not exists ' ~ last ~ ' (build_id varchar, base_build_id varchar, has_changes boolean,'
            ~ ' identifiers_build_id varchar, fingerprint varchar)'
        ) -%}
        {%- set base = run_query('select max(build_id) from ' ~ last).rows[0][0] -%}
        {%- set identifiers = identity_edges_identifiers_build() if materialized else none -%}
        {%- do run_query(
            'create or replace table ' ~ last ~ " as select '" ~ invocation_id ~ "' as build_id, "
            ~ ("'" ~ base ~ "'" if base else 'cast(null as varchar)') ~ ' as base_build_id, '
            ~ ('true' if kept_changes else 'false') ~ ' as has_changes, '
            ~ ("'" ~ identifiers[0] ~ "'" if identifiers else 'cast(null as varchar)') ~ ' as identifiers_build_id, '
            ~ "'" ~ identity_edges_fingerprint() ~ "' as fingerprint"
        ) -%}
        {%- for name in ['records', 'old'] -%}
            {%- do run_query('drop table if exists ' ~ work ~ name) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
