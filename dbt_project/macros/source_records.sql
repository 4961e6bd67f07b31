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
    `<model>__last_build` keeps their ids. Otherwise (first build, --full-refresh, a whole
    build of either, either built more than once since, a change of the model or these
    macros) every source key is computed. The decision and the counts are printed in the
    dbt log. The work table `<model>__sr_keys` is dropped by the post-hook. -#}

{#- Bump when the SQL of these macros changes what a build computes. -#}
{% macro source_records_version() -%}
    {{ return('1') }}
{%- endmacro %}

{% macro source_records_fingerprint() -%}
    {{ return(model.checksum.checksum ~ '|' ~ source_records_version()) }}
{%- endmacro %}

{#- A side table of the model `model_name` (this model when none). -#}
{% macro source_records_side(name, model_name=none) -%}
    {%- set relation = ref(model_name) if model_name else this -%}
    {{ return(api.Relation.create(database=relation.database, schema=relation.schema, identifier=relation.identifier ~ '__' ~ name)) }}
{%- endmacro %}

{#- The last build of an upstream model: (build_id, base_build_id, changes kept), or none. -#}
{% macro source_records_upstream_build(model_name) -%}
    {%- set last = source_records_side('last_build', model_name) -%}
    {%- if not relation_exists_now(last) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set column = 'not is_whole' if model_name == 'int_identity_identifiers' else 'has_changes' -%}
    {%- set rows = run_query('select build_id, base_build_id, ' ~ column ~ ' from ' ~ last).rows -%}
    {{ return(rows[0] if rows | length == 1 else none) }}
{%- endmacro %}

{#- namespace(reason, keys_changed, records_changed): reason is none when the build can be
    incremental; keys_changed / records_changed: the upstream model was built since (once)
    and its changes are to be read. -#}
{% macro source_records_decision() -%}
    {%- set result = namespace(reason=none, keys_changed=false, records_changed=false) -%}
    {%- if not is_incremental() -%}
        {%- set result.reason = 'full refresh' if flags.FULL_REFRESH else 'first build' -%}
        {{ return(result) }}
    {%- endif -%}
    {%- set last = source_records_side('last_build') -%}
    {%- if not relation_exists_now(last) -%}
        {%- set result.reason = 'no earlier build kept' -%}
        {{ return(result) }}
    {%- endif -%}
    {%- set kept = run_query('select identifiers_build_id, components_build_id, fingerprint from ' ~ last).rows -%}
    {%- if kept | length != 1 or kept[0][2] != source_records_fingerprint() -%}
        {%- set result.reason = 'the model or its macros changed' -%}
        {{ return(result) }}
    {%- endif -%}
    {%- for model_name, kept_id, changed in [
        ('int_identity_identifiers', kept[0][0], 'changed_keys'),
        ('int_identity_components_resolved', kept[0][1], 'changed_records'),
    ] -%}
        {%- set upstream = source_records_upstream_build(model_name) -%}
        {%- if upstream is none or kept_id is none -%}
            {%- set result.reason = 'no build of ' ~ model_name ~ ' recorded' -%}
        {%- elif upstream[0] != kept_id -%}
            {%- if upstream[1] != kept_id -%}
                {%- set result.reason = model_name ~ ' was built more than once since' -%}
            {%- elif not upstream[2] or not relation_exists_now(source_records_side(changed, model_name)) -%}
                {%- set result.reason = model_name ~ ' was built whole' -%}
            {%- elif model_name == 'int_identity_identifiers' -%}
                {%- set result.keys_changed = true -%}
            {%- else -%}
                {%- set result.records_changed = true -%}
            {%- endif -%}
        {%- endif -%}
        {%- if result.reason is not none -%}
            {{ return(result) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(result) }}
{%- endmacro %}

{#- namespace(incremental, keys): on an incremental build, `keys` is the work table of the
    (source_entity, source_key) computed again. -#}
{% macro source_records_plan() -%}
    {%- set plan = namespace(incremental=false, keys=none) -%}
    {%- if not identity_identifiers_materialized() -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set work = work_prefix('__sr_') -%}
    {%- do run_query('drop table if exists ' ~ work ~ 'keys') -%}
    {%- set decision = source_records_decision() -%}
    {%- if decision.reason is not none -%}
        {#- the pre-hook deletes every row of an existing table -#}
        {{ log("source records: every source key computed (" ~ decision.reason ~ ")", info=true) }}
        {{ return(plan) }}
    {%- endif -%}
    {%- set parts = ['select cast(null as varchar) as source_entity, cast(null as varchar) as source_key where false'] -%}
    {%- if decision.keys_changed -%}
        {%- do parts.append(
            'select changed.source_entity, changed.source_key from '
            ~ source_records_side('changed_keys', 'int_identity_identifiers') ~ ' as changed'
        ) -%}
    {%- endif -%}
    {%- if decision.records_changed -%}
        {%- do parts.append(
            'select built.entity as source_entity, built.record_key as source_key from ' ~ this ~ ' as built'
            ~ ' where built.record_id in (select changed.record_id from '
            ~ source_records_side('changed_records', 'int_identity_components_resolved') ~ ' as changed)'
        ) -%}
    {%- endif -%}
    {%- do run_query('create table ' ~ work ~ 'keys as select distinct * from (' ~ parts | join(' union all ') ~ ') as changed') -%}
    {%- set plan.incremental = true -%}
    {%- set plan.keys = work ~ 'keys' -%}
    {%- set counts = run_query('select (select count(*) from ' ~ work ~ 'keys), (select count(*) from ' ~ this ~ ')').rows[0] -%}
    {{ log("source records: recomputing " ~ counts[0] ~ " source keys of " ~ counts[1], info=true) }}
    {{ return(plan) }}
{%- endmacro %}

{#- pre-hook: delete the rows this build computes again (all of them on a whole build of the
    existing table). -#}
{% macro source_records_prepare() -%}
    {%- if execute and target.type != 'spark' and is_incremental() -%}
        {%- set present = work_tables_present('__sr_') if identity_identifiers_materialized() else [] -%}
        {%- if this.identifier ~ '__sr_keys' in present -%}
            delete from {{ this }} where source_record_id in (select keys.source_entity || '/' || keys.source_key from {{ work_prefix('__sr_') }}keys as keys)
        {%- else -%}
            delete from {{ this }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- post-hook: keep the identifiers and components builds this build read (none when it was
    not computed for real: the next build is whole), drop the work table. -#}
{% macro source_records_finish() -%}
    {%- if execute and target.type != 'spark' and model.resource_type != 'unit_test' -%}
        {%- set materialized = identity_identifiers_materialized() -%}
        {%- set ids = [] -%}
        {%- for model_name in ['int_identity_identifiers', 'int_identity_components_resolved'] -%}
            {%- set upstream = source_records_upstream_build(model_name) if materialized else none -%}
            {%- do ids.append("'" ~ upstream[0] ~ "'" if upstream else 'cast(null as varchar)') -%}
        {%- endfor -%}
        {%- do run_query(
            'create or replace table ' ~ source_records_side('last_build') ~ ' as select '
            ~ ids[0] ~ ' as identifiers_build_id, ' ~ ids[1] ~ ' as components_build_id, '
            ~ "'" ~ source_records_fingerprint() ~ "' as fingerprint"
        ) -%}
        {%- do run_query('drop table if exists ' ~ work_prefix('__sr_') ~ 'keys') -%}
    {%- endif -%}
{%- endmacro %}
