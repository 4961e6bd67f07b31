{#- The keys each build of a fact wrote (DuckDB), read by the publication
    (pipelines/publish/serving.py) to compare only those rows with the current release.

    A fact built `delete+insert` by its `unique_key` changes only the rows whose key is in
    the build's new rows (dbt's temporary table `<model>__dbt_tmp<time>`): the old rows of those
    keys are deleted, the new rows inserted. This post-hook (inside the build's transaction,
    so kept only with the rows it describes) appends those keys to
    `<target schema>.<model>__written_keys` (build, whole, <unique_key>):
    - build: a number that grows with every build of the model (microseconds since the
      epoch of the build's transaction, or the last build's + 1 when that is larger);
    - whole = true (key NULL): every row may have changed in that build (a first build, a
      --full-refresh, a log started beside an existing table, or entries pruned: then the
      marker carries the largest pruned build);
    - whole = false: a key the build wrote.
    Entries older than var('written_keys_days') days are pruned. A publication that starts
    from a release made at build T compares the rows of the keys logged after T, and every
    row when a whole marker follows T or T is not in the log (docs/publishing.md). -#}
{% macro keep_written_keys() -%}
    {%- if execute and target.type == 'duckdb' -%}
        {%- set key = config.get('unique_key') -%}
        {%- set log = written_keys_relation(this) -%}
        {#- dbt-duckdb names it `<model>__dbt_tmp<time of the build>` -#}
        {%- set tmp = run_query(
            "select max(table_name) from duckdb_tables() where temporary and starts_with(table_name, '"
            ~ this.identifier ~ "__dbt_tmp')"
        ).rows[0][0] if is_incremental() else none -%}
        {%- set incremental = tmp is not none -%}
        {%- do run_query(
            'create table if not exists ' ~ log ~ ' as select cast(null as bigint) as build, '
            ~ 'cast(null as boolean) as whole, ' ~ key ~ ' from ' ~ this ~ ' where false'
        ) -%}
        {%- set build = run_query(
            'select greatest(coalesce(max(build), 0) + 1, epoch_us(get_current_timestamp())) from ' ~ log
        ).rows[0][0] -%}
        {%- if not incremental -%}
            {%- do run_query('delete from ' ~ log) -%}
            {%- do run_query('insert into ' ~ log ~ ' (build, whole) values (' ~ build ~ ', true)') -%}
        {%- else -%}
            {#- a log started beside a table built without one: what changed before is unknown -#}
            {%- do run_query(
                'insert into ' ~ log ~ ' (build, whole) select ' ~ build ~ ' - 1, true '
                ~ 'where not exists (select 1 from ' ~ log ~ ')'
            ) -%}
            {%- do run_query(
                'insert into ' ~ log ~ ' (build, whole, ' ~ key ~ ') select distinct ' ~ build
                ~ ', false, ' ~ key ~ ' from temp.main."' ~ tmp ~ '" where ' ~ key ~ ' is not null'
            ) -%}
            {%- set cutoff = build - var('written_keys_days') * 86400 * 1000000 -%}
            {%- set pruned = run_query(
                'select max(build) from ' ~ log ~ ' where build < ' ~ cutoff
            ).rows[0][0] -%}
            {%- if pruned is not none -%}
                {%- do run_query('delete from ' ~ log ~ ' where build < ' ~ cutoff) -%}
                {%- do run_query('insert into ' ~ log ~ ' (build, whole) values (' ~ pruned ~ ', true)') -%}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- Where the keys written by the builds of `relation` (a fact) are kept: in the warehouse's
    own schema, beside the build records (models/state), so that the publication (every
    table of `marts`) does not publish them. -#}
{% macro written_keys_relation(relation) -%}
    {{ return(api.Relation.create(database=relation.database, schema=target.schema, identifier=relation.identifier ~ '__written_keys')) }}
{%- endmacro %}
