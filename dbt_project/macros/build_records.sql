{#- The hand-over between the incremental builds of the identity models (DuckDB).

    A model that can tell what its build changed keeps it beside its table (side tables
    `<model>__changed_*` or `<model>__changes`) with one row describing the build in
    `<model>__last_build`:
    - build_id: the dbt invocation;
    - base_build_id: the build before it;
    - has_changes: whether the side tables hold this build's changes (false after a whole
      build that kept none);
    - fingerprint: what the build computes, from the SQL of the model and of the macros it
      calls (macros/sql_fingerprint.sql; none when the model keeps its own state, as
      int_identity_identifiers does);
    - read_<model>: for each upstream model it read, the id of that model's build it read
      (none when it did not compute for real: the next build is whole).
    A downstream build can start from an upstream's changes only when the upstream was
    built exactly once since the build it read last (upstream_change). -#}

{#- The side table `<relation>__<name>` (of this model when relation is none). -#}
{% macro side_table(name, relation=none) -%}
    {%- set owner = relation if relation is not none else this -%}
    {{ return(api.Relation.create(database=owner.database, schema=owner.schema, identifier=owner.identifier ~ '__' ~ name)) }}
{%- endmacro %}

{#- The build kept for `relation` (this model when none): a dict with build_id,
    base_build_id, has_changes, fingerprint and read (upstream model name -> build id), or
    none. A column the table lacks (kept by an earlier version) reads as none. -#}
{% macro build_record(relation=none) -%}
    {%- set last = side_table('last_build', relation) -%}
    {%- if not relation_exists_now(last) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set table = run_query('select * from ' ~ last) -%}
    {%- if table.rows | length != 1 -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set record = {'build_id': none, 'base_build_id': none, 'has_changes': none, 'fingerprint': none, 'read': {}} -%}
    {%- for name in table.column_names -%}
        {%- set value = table.rows[0][loop.index0] -%}
        {%- if name.startswith('read_') -%}
            {%- do record['read'].update({name[5:]: value}) -%}
        {%- elif name in ['build_id', 'base_build_id', 'has_changes', 'fingerprint'] -%}
            {%- do record.update({name: value}) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(record) }}
{%- endmacro %}

{#- Why this build computes everything, or none when it may start from its last build:
    namespace(reason, kept), kept being this model's build record. -#}
{% macro own_build_decision(fingerprint) -%}
    {%- set result = namespace(reason=none, kept=none) -%}
    {%- if not is_incremental() -%}
        {%- set result.reason = 'full refresh' if flags.FULL_REFRESH else 'first build' -%}
        {{ return(result) }}
    {%- endif -%}
    {%- set result.kept = build_record() -%}
    {%- if result.kept is none -%}
        {%- set result.reason = 'no earlier build kept' -%}
    {%- elif result.kept.fingerprint != fingerprint -%}
        {%- set result.reason = 'the model or its macros changed' -%}
    {%- endif -%}
    {{ return(result) }}
{%- endmacro %}

{#- How the upstream `model_name` changed since its build `read_id` (the one this model's
    last build read): 'unchanged' (not built since), 'changes' (built once since, with its
    changes kept in the side tables `tables`), or why this build is whole. -#}
{% macro upstream_change(model_name, read_id, tables) -%}
    {%- set upstream = build_record(ref(model_name)) -%}
    {%- if upstream is none or upstream.build_id is none or read_id is none -%}
        {{ return('no build of ' ~ model_name ~ ' recorded') }}
    {%- elif upstream.build_id == read_id -%}
        {{ return('unchanged') }}
    {%- elif upstream.base_build_id != read_id -%}
        {{ return(model_name ~ ' was built more than once since') }}
    {%- elif not upstream.has_changes -%}
        {{ return(model_name ~ ' was built whole') }}
    {%- endif -%}
    {%- for name in tables if not relation_exists_now(side_table(name, ref(model_name))) -%}
        {{ return('the changes of ' ~ model_name ~ ' are not kept') }}
    {%- endfor -%}
    {{ return('changes') }}
{%- endmacro %}

{#- Whether this build may start from the changes of its upstream models: namespace(reason,
    changed). reason: why every row is computed (this model's own build record, or an
    upstream that is neither unchanged nor built once with its changes kept), or none;
    changed: the upstream models built once since, whose side tables are to be read.
    `upstreams`: (model name, its side tables) pairs. -#}
{% macro upstreams_decision(fingerprint, upstreams) -%}
    {%- set result = namespace(reason=none, changed=[]) -%}
    {%- set own = own_build_decision(fingerprint) -%}
    {%- if own.reason is not none -%}
        {%- set result.reason = own.reason -%}
        {{ return(result) }}
    {%- endif -%}
    {%- for model_name, tables in upstreams -%}
        {%- set change = upstream_change(model_name, own.kept.read.get(model_name), tables) -%}
        {%- if change == 'changes' -%}
            {%- do result.changed.append(model_name) -%}
        {%- elif change != 'unchanged' -%}
            {%- set result.reason = change -%}
            {{ return(result) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(result) }}
{%- endmacro %}

{#- Part of a post-hook: record this build in `<this>__last_build`, with the current build
    of each upstream model in `read` as the one it read (none when `read_known` is false:
    the next build is whole). -#}
{% macro keep_build_record(has_changes, fingerprint=none, read=[], read_known=true) -%}
    {%- set before = build_record() -%}
    {%- set columns = [
        sql_text_or_null(invocation_id) ~ ' as build_id',
        sql_text_or_null(before.build_id if before else none) ~ ' as base_build_id',
        ('true' if has_changes else 'false') ~ ' as has_changes',
        sql_text_or_null(fingerprint) ~ ' as fingerprint',
    ] -%}
    {%- for model_name in read -%}
        {%- set upstream = build_record(ref(model_name)) if read_known else none -%}
        {%- do columns.append(sql_text_or_null(upstream.build_id if upstream else none) ~ ' as read_' ~ model_name) -%}
    {%- endfor -%}
    {%- do run_query('create or replace table ' ~ side_table('last_build') ~ ' as select ' ~ columns | join(', ')) -%}
{%- endmacro %}

{#- Drop this model's work tables `<model><suffix><name>` for each of `names`. -#}
{% macro drop_work_tables(suffix, names) -%}
    {%- for name in names -%}
        {%- do run_query('drop table if exists ' ~ work_prefix(suffix) ~ name) -%}
    {%- endfor -%}
{%- endmacro %}

{#- The pre-hook of an incremental model whose build may compute only some rows again:
    delete the rows whose `column` is among those the plan of this build put in its work
    table `<model><suffix><name>` (`value_sql`, over that table aliased `scoped`), or every
    row when there is none (a whole build of the existing table; `materialized` false: the
    model is not computed for real, so no plan ran). -#}
{% macro delete_recomputed_rows(suffix, name, column, value_sql, materialized) -%}
    {%- if execute and target.type != 'spark' and is_incremental() -%}
        {%- if materialized and this.identifier ~ suffix ~ name in work_tables_present(suffix) -%}
            delete from {{ this }} where {{ column }} in (select {{ value_sql }} from {{ work_prefix(suffix) ~ name }} as scoped)
        {%- else -%}
            delete from {{ this }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- A text literal (a build id or fingerprint: no quotes inside), or a typed NULL. -#}
{% macro sql_text_or_null(value) -%}
    {{ return("'" ~ value ~ "'" if value is not none else 'cast(null as varchar)') }}
{%- endmacro %}
