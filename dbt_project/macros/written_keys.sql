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
    own schema, beside crm_build_log, so that the publication (every table of `marts`)
    does not publish them. -#}
{% macro written_keys_relation(relation) -%}
    {{ return(api.Relation.create(database=relation.database, schema=target.schema, identifier=relation.identifier ~ '__written_keys')) }}
{%- endmacro %}

{#- on-run-end: for each fact with a written-keys log whose data tests ran in this
    invocation and all passed (or warned), record the last build of the log as tested
    (`<target schema>.crm_tested_builds`). A night's scoped tests check the keys of every
    build after the last one recorded (written_rows_filter), so the rows of a night whose
    tests failed are checked again by the next nights until they pass. -#}
{% macro record_tested_builds(results) -%}
    {%- if execute and target.type == 'duckdb' -%}
        {%- set outcomes = {} -%}
        {%- for result in results if result.node.resource_type == 'test' -%}
            {%- set attached = result.node.attached_node -%}
            {%- if attached -%}
                {%- do outcomes.setdefault(attached, []).append(result.status | string) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- do run_query('create table if not exists ' ~ tested_builds_relation()
            ~ ' (model varchar, build bigint, tested_at timestamp)') -%}
        {%- for unique_id, statuses in outcomes.items() -%}
            {%- set node = graph.nodes.get(unique_id) -%}
            {%- set log = written_keys_relation(api.Relation.create(database=node.database, schema=node.schema, identifier=node.alias or node.name)) if node else none -%}
            {%- if log is not none and statuses | reject('in', ['pass', 'warn']) | list | length == 0
                and adapter.get_relation(log.database, log.schema, log.identifier) is not none -%}
                {%- do run_query(
                    'insert into ' ~ tested_builds_relation() ~ " select '" ~ node.name ~ "', max(build), "
                    ~ 'cast(current_timestamp as timestamp) from ' ~ log ~ ' having max(build) is not null'
                ) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{% macro tested_builds_relation() -%}
    {{ return(target.schema ~ '.crm_tested_builds') }}
{%- endmacro %}
