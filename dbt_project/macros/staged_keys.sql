{#- The source keys with new staged rows, for the identity models that keep a row per source
    key (int_identity_records, int_identity_identifiers; DuckDB only).

    A source key is a customer account (customer_key), an order (order_id), a ticket
    (ticket_id) or a social account (social_account_key). Such a model keeps, beside its
    table, the staging state it read (`<model>__build_log`: per entity the staging build's
    D, newest load, model checksum, covered loads and rebuild time, and the model's
    fingerprint). Its next build takes the keys with a staged row that is new since that
    state: delivered or dated after the staging D it read, or loaded after its newest load
    (the rule by which the staging models themselves take new rows). A social interaction
    can be delivered again under another account: the accounts named by its earlier raw
    rows are changed keys too. Every other key has the staged rows it had.

    The build is whole (every key) when no earlier build is kept (first build,
    --full-refresh, after an erasure), the fingerprint changed (the model, the SQL its
    macros render, the settings), a staging model was built as of an earlier D, with other
    SQL, or rebuilt whole (`rebuilt_at` of its build log) since the state kept, or a
    delivery that state covered was loaded again or is gone. -#}

{% macro staged_keys_entities() -%}
    {{ return({
        'customers': {'model': 'stg_raw__customers', 'key': 'customer_key', 'date': 'updated_date'},
        'orders': {'model': 'stg_raw__orders', 'key': 'order_id', 'date': 'order_date'},
        'service_events': {'model': 'stg_raw__service_events', 'key': 'ticket_id', 'date': 'event_date'},
        'social_interactions': {'model': 'stg_raw__social_interactions', 'key': 'social_account_key', 'date': 'occurred_date'},
    }) }}
{%- endmacro %}

{#- The staging models' build logs, one select per entity: entity, as_of_date,
    loaded_through, model_checksum, covered_loads, rebuilt_at. -#}
{% macro staged_keys_state_sql() -%}
    {%- set parts = [] -%}
    {%- for entity, spec in staged_keys_entities().items() -%}
        {%- set staged = ref(spec.model) -%}
        {%- do parts.append(
            "select '" ~ entity ~ "' as entity, as_of_date, loaded_through, model_checksum, covered_loads, rebuilt_at from "
            ~ api.Relation.create(database=staged.database, schema=staged.schema, identifier=staged.identifier ~ '__build_log')
            ~ " where model = '" ~ staged.identifier ~ "'"
        ) -%}
    {%- endfor -%}
    {{ return(parts | join(' union all ')) }}
{%- endmacro %}

{#- Part of a post-hook: keep the staging state this build read, with `fingerprint`. -#}
{% macro keep_staged_keys_state(fingerprint) -%}
    {%- do run_query(
        'create or replace table ' ~ side_table('build_log')
        ~ " as select entity, as_of_date, loaded_through, model_checksum, covered_loads, rebuilt_at, '"
        ~ fingerprint ~ "' as fingerprint from (" ~ staged_keys_state_sql() ~ ') as staging_state'
    ) -%}
{%- endmacro %}

{#- The select of the distinct (source_entity, source_key) with a staged row new since the
    staging state kept in `kept` (this model's build log). Each of the three conditions is
    its own select with a literal bound (a range DuckDB can prune by row group; one OR of
    the three was no filter it could push into the scan). -#}
{% macro staged_changed_keys_sql(kept) -%}
    {%- set states = {} -%}
    {%- for row in run_query('select entity, cast(as_of_date as varchar), cast(loaded_through as varchar) from ' ~ kept).rows -%}
        {%- do states.update({row[0]: {'as_of': row[1], 'loaded_through': row[2]}}) -%}
    {%- endfor -%}
    {%- set parts = [] -%}
    {%- for entity, spec in staged_keys_entities().items() -%}
        {#- staged_keys_whole_reason made sure there is a row per entity -#}
        {%- set state = states[entity] -%}
        {%- set conditions = [] -%}
        {%- if state.as_of is not none -%}
            {%- do conditions.append("staged.delivery_date > date '" ~ state.as_of ~ "'") -%}
            {%- do conditions.append("staged." ~ spec.date ~ " > date '" ~ state.as_of ~ "'") -%}
        {%- endif -%}
        {%- do conditions.append(("staged.loaded_at > timestamp '" ~ state.loaded_through ~ "'") if state.loaded_through is not none else 'true') -%}
        {%- set selects = [] -%}
        {%- for condition in conditions -%}
            {%- do selects.append(
                'select staged.' ~ spec.key ~ ' as source_key'
                ~ (', staged.interaction_id as row_key, staged.source_interaction_id as source_row_key' if entity == 'social_interactions' else '')
                ~ ' from ' ~ ref(spec.model) ~ ' as staged where ' ~ condition
            ) -%}
        {%- endfor -%}
        {%- set new_rows_sql = '(' ~ selects | join(' union all ') ~ ')' -%}
        {%- do parts.append("select distinct '" ~ entity ~ "' as source_entity, new_rows.source_key from " ~ new_rows_sql ~ " as new_rows") -%}
        {%- if entity == 'social_interactions' -%}
            {#- the accounts an interaction was delivered under before: the raw rows of the
                new interactions, found first by their cleaned id alone (the staged id is
                the platform code, which has no ':', and that id), then matched on the
                whole staged id; `offset 0` keeps DuckDB from normalising every raw row
                for the second condition before the first (6.7 s against 1.3 s for the
                22.5 M raw interactions of the large preset) -#}
            {%- do parts.append(
                "select distinct 'social_interactions' as source_entity, "
                ~ normalize_code('earlier.platform') ~ " || ':' || " ~ clean_text('earlier.account_id') ~ " as source_key"
                ~ " from (select raw_rows.platform, raw_rows.interaction_id, raw_rows.account_id from "
                ~ raw_relation('social_interactions') ~ " as raw_rows"
                ~ " where " ~ clean_text('raw_rows.interaction_id') ~ " in (select new_rows.source_row_key from " ~ new_rows_sql ~ " as new_rows)"
                ~ " offset 0) as earlier"
                ~ " where " ~ normalize_code('earlier.platform') ~ " || ':' || " ~ clean_text('earlier.interaction_id')
                ~ " in (select new_rows.row_key from " ~ new_rows_sql ~ " as new_rows)"
                ~ " and " ~ clean_text('earlier.account_id') ~ " is not null"
            ) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return('select distinct * from (' ~ parts | join(' union all ') ~ ') as changed') }}
{%- endmacro %}

{#- None when the build of this model can start from the staging state it kept, else why
    it is whole. `fingerprint`: what its rows depend on besides the staged rows;
    `state_tables`: the side tables the model keeps (all must exist). -#}
{% macro staged_keys_whole_reason(fingerprint, state_tables) -%}
    {%- if not is_incremental() -%}
        {{ return('full refresh' if flags.FULL_REFRESH else 'first build') }}
    {%- endif -%}
    {%- set kept = side_table('build_log') -%}
    {%- for name in ['build_log'] + state_tables -%}
        {%- set table = side_table(name) -%}
        {%- if adapter.get_relation(table.database, table.schema, table.identifier) is none -%}
            {{ return('no earlier build kept') }}
        {%- endif -%}
    {%- endfor -%}
    {%- for entity, spec in staged_keys_entities().items() -%}
        {%- set staged = ref(spec.model) -%}
        {%- if adapter.get_relation(staged.database, staged.schema, staged.identifier ~ '__build_log') is none -%}
            {{ return(staged.identifier ~ ' has no build log') }}
        {%- endif -%}
    {%- endfor -%}
    {%- set fingerprints = run_query('select distinct fingerprint from ' ~ kept).columns[0].values() -%}
    {%- if fingerprints | length != 1 or fingerprints[0] != fingerprint -%}
        {{ return('the model, its inputs\' SQL or its settings changed') }}
    {%- endif -%}
    {%- set checks -%}
        with current_state as ({{ staged_keys_state_sql() }})
        select
            kept.entity,
            current_state.entity is null as no_staging_log,
            current_state.as_of_date < kept.as_of_date as earlier_d,
            current_state.model_checksum <> kept.model_checksum as other_sql,
            (select count(*) from {{ raw_relation('load_log') }} as loads
             where loads.entity = kept.entity and loads._delivery_date <= kept.as_of_date
                 and kept.loaded_through is not null and loads._loaded_at > kept.loaded_through) as reloaded,
            (select count(*) from {{ raw_relation('load_log') }} as loads
             where loads.entity = kept.entity and loads._delivery_date <= kept.as_of_date) as covered_now,
            kept.covered_loads,
            current_state.rebuilt_at is distinct from kept.rebuilt_at as rebuilt
        from {{ kept }} as kept
        left join current_state on kept.entity = current_state.entity
        order by kept.entity
    {%- endset -%}
    {%- set rows = run_query(checks).rows -%}
    {%- if rows | length != staged_keys_entities() | length -%}
        {{ return('the staging state kept is incomplete') }}
    {%- endif -%}
    {%- for row in rows -%}
        {%- if row[1] -%}
            {{ return('stg_raw__' ~ row[0] ~ ' has no build of its own recorded') }}
        {%- elif row[2] -%}
            {{ return('stg_raw__' ~ row[0] ~ ' was built as of an earlier D') }}
        {%- elif row[3] -%}
            {{ return('stg_raw__' ~ row[0] ~ ' was built with other SQL or settings') }}
        {%- elif row[4] > 0 -%}
            {{ return('a delivery of ' ~ row[0] ~ ' covered by the last build was loaded again') }}
        {%- elif row[5] != row[6] -%}
            {{ return('loads of ' ~ row[0] ~ ' covered by the last build are gone') }}
        {%- elif row[7] -%}
            {{ return('stg_raw__' ~ row[0] ~ ' was rebuilt whole since the last build') }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}

{#- `exists (...)`: the row `alias` (with source_entity, source_key) is of a key in `keys`. -#}
{% macro is_changed_key(keys, alias='kept') -%}
    exists (
        select 1 from {{ keys }} as keys
        where keys.source_entity = {{ alias }}.source_entity and keys.source_key = {{ alias }}.source_key
    )
{%- endmacro %}

{#- The records the changed keys in `work`keys belong to now (`work`new, their rows as
    computed again) and belonged to before (`by_source`, the rows kept). -#}
{% macro records_of_changed_keys_sql(by_source, work) -%}
    select kept.record_id
    from {{ by_source }} as kept
    where {{ is_changed_key(work ~ 'keys') }}
    union
    select new.record_id from {{ work }}new as new
{%- endmacro %}

{#- Part of a post-hook: replace the kept rows of the changed keys by those computed again. -#}
{% macro replace_kept_rows_of_changed_keys(by_source, work) -%}
    {%- do run_query('delete from ' ~ by_source ~ ' as kept where ' ~ is_changed_key(work ~ 'keys')) -%}
    {%- do run_query('insert into ' ~ by_source ~ ' select * from ' ~ work ~ 'new') -%}
{%- endmacro %}

{#- The staging state columns of a build log (without the model's fingerprint). -#}
{% macro staged_keys_state_columns() -%}
    {{ return('entity, as_of_date, loaded_through, model_checksum, covered_loads, rebuilt_at') }}
{%- endmacro %}

{#- Part of a post-hook, before keep_staged_keys_state: on an incremental build, keep its
    changed keys (`work`keys) in `<model>__changed_keys` and the staging state they were
    found from (the build log before this build) in `<model>__changed_keys_from`, for
    another model of the same build that kept the same state (staged_keys_found_by); on a
    whole build, drop both. -#}
{% macro keep_staged_changed_keys(work, incremental) -%}
    {%- do run_query('drop table if exists ' ~ side_table('changed_keys')) -%}
    {%- do run_query('drop table if exists ' ~ side_table('changed_keys_from')) -%}
    {%- if incremental -%}
        {%- do run_query('alter table ' ~ work ~ 'keys rename to ' ~ this.identifier ~ '__changed_keys') -%}
        {%- do run_query(
            'create table ' ~ side_table('changed_keys_from') ~ ' as select ' ~ staged_keys_state_columns()
            ~ ' from ' ~ side_table('build_log')
        ) -%}
    {%- endif -%}
{%- endmacro %}

{#- The changed keys that `model_name` (an upstream model keeping them with
    keep_staged_changed_keys) found in this dbt invocation, when they are exactly the keys
    this build would find: it started from the staging state this model kept and reached
    the staging state of now. None otherwise (this build then finds its own). -#}
{% macro staged_keys_found_by(model_name) -%}
    {%- set other = ref(model_name) -%}
    {%- set record = build_record(other) -%}
    {%- if record is none or record.build_id != invocation_id -%}
        {{ return(none) }}
    {%- endif -%}
    {%- for name in ['changed_keys', 'changed_keys_from', 'build_log'] if not relation_exists_now(side_table(name, other)) -%}
        {{ return(none) }}
    {%- endfor -%}
    {%- set columns = staged_keys_state_columns() -%}
    {%- set compare_sql -%}
        with
        mine as (select {{ columns }} from {{ side_table('build_log') }}),
        started as (select {{ columns }} from {{ side_table('changed_keys_from', other) }}),
        reached as (select {{ columns }} from {{ side_table('build_log', other) }}),
        staged_now as ({{ staged_keys_state_sql() }})
        select
            (select count(*) from mine),
            (select count(*) from (
                (select * from mine except all select * from started)
                union all (select * from started except all select * from mine)
            ) as differences),
            (select count(*) from (
                (select * from reached except all select * from staged_now)
                union all (select * from staged_now except all select * from reached)
            ) as differences)
    {%- endset -%}
    {%- set row = run_query(compare_sql).rows[0] -%}
    {{ return(side_table('changed_keys', other) if row[0] == staged_keys_entities() | length and row[1] == 0 and row[2] == 0 else none) }}
{%- endmacro %}
