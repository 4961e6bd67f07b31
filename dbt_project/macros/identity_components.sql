{#- Incremental identity components (int_identity_components_resolved, DuckDB only; on
    Spark the model is a table). int_identity_edges keeps the edges that appeared or
    disappeared in its last build (`int_identity_edges__changes`, macros/identity_edges.sql)
    and this model keeps the id of the edges build it read (`<model>__edges_read`). When
    the edges were built exactly once since (or not at all), an incremental build finds the
    records touched since: the ends of every edge that appeared or disappeared, the records
    that became nodes and the other ends of their edges (an edge kept while one of its ends
    was no node links two old components once both are), and those that stopped being
    nodes. Every component of {{ this }} with a touched record is recomputed whole (with
    the new nodes); the others keep their rows. Otherwise (the edges built twice since, or
    whole from scratch, or no edges build recorded: the first night after an upgrade)
    every component is computed. Work tables `<model>__cc_affected` / `__cc_removed` are
    dropped by connected_components_cleanup. -#}

{#- A side table of int_identity_edges. -#}
{% macro identity_components_edges_side(name) -%}
    {%- set edges = ref('int_identity_edges') -%}
    {{ return(api.Relation.create(database=edges.database, schema=edges.schema, identifier=edges.identifier ~ '__' ~ name)) }}
{%- endmacro %}

{% macro identity_components_edges_read() -%}
    {{ return(api.Relation.create(database=this.database, schema=this.schema, identifier=this.identifier ~ '__edges_read')) }}
{%- endmacro %}

{#- The id of the last edges build: (build_id, base_build_id, has_changes), or none. -#}
{% macro identity_components_edges_build() -%}
    {%- set last = identity_components_edges_side('last_build') -%}
    {%- if not relation_exists_now(last) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set rows = run_query('select build_id, base_build_id, has_changes from ' ~ last).rows -%}
    {{ return(rows[0] if rows | length == 1 else none) }}
{%- endmacro %}

{#- 'changes' (the edges were built once since the build this model read: their changes
    are kept), 'unchanged' (not built since), or why every component is computed. -#}
{% macro identity_components_edges_decision() -%}
    {%- set read = identity_components_edges_read() -%}
    {%- set edges = identity_components_edges_build() -%}
    {%- if not relation_exists_now(read) or edges is none -%}
        {{ return('no build of the edges recorded') }}
    {%- endif -%}
    {%- set consumed = run_query('select max(edges_build_id) from ' ~ read).rows[0][0] -%}
    {%- if consumed is none -%}
        {{ return('no build of the edges recorded') }}
    {%- elif edges[0] == consumed -%}
        {{ return('unchanged') }}
    {%- elif edges[1] != consumed -%}
        {{ return('the edges were built more than once since') }}
    {%- elif not edges[2] -%}
        {{ return('the edges were built from scratch') }}
    {%- endif -%}
    {{ return('changes') }}
{%- endmacro %}

{#- The nodes and (undirected) edges the components are computed from: all of them, or
    on an incremental build the affected nodes and their edges. -#}
{% macro identity_components_inputs(nodes_sql, edges_sql) -%}
    {%- set affected = identity_components_affected(nodes_sql) -%}
    {%- if affected is none -%}
        {{ return(namespace(nodes_sql=nodes_sql, edges_sql=edges_sql)) }}
    {%- endif -%}
    {%- set affected_edges_sql -%}
        select all_edges.from_node_id, all_edges.to_node_id
        from ({{ edges_sql }}) as all_edges
        where all_edges.from_node_id in ({{ affected.nodes_sql }})
    {%- endset -%}
    {{ return(namespace(nodes_sql=affected.nodes_sql, edges_sql=affected_edges_sql)) }}
{%- endmacro %}

{#- Returns none (compute every component) or a namespace with `nodes_sql`: the nodes
    whose component is recomputed, in a work table. Only when the model is built
    incrementally with the edges of its last build kept (not when it is only compiled,
    e.g. by `dbt docs generate`, which must not write work tables). -#}
{% macro identity_components_affected(nodes_sql) -%}
    {%- if not execute or target.type == 'spark' or model.resource_type == 'unit_test'
        or flags.WHICH not in ['run', 'build'] or not is_incremental() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set work = connected_components_work_prefix() -%}
    {%- do run_query('create or replace table ' ~ work ~ 'nodes as ' ~ nodes_sql) -%}
    {#- the records of the last build that are no nodes now: deleted by the post-hook (the
        delete+insert below only replaces the records it writes) -#}
    {%- do run_query(
        'create or replace table ' ~ work ~ 'removed as select built.record_id from ' ~ this
        ~ ' as built where built.record_id not in (select nodes.node_id from ' ~ work ~ 'nodes as nodes)'
    ) -%}
    {%- set decision = identity_components_edges_decision() -%}
    {%- if decision not in ['changes', 'unchanged'] -%}
        {{ log("identity components: every component computed (" ~ decision ~ ")", info=true) }}
        {{ return(none) }}
    {%- endif -%}
    {%- set affected_sql -%}
        create or replace table {{ work }}affected as
        with
        changed_edges as (
            {%- if decision == 'changes' %}
            select changes.from_record_id, changes.to_record_id
            from {{ identity_components_edges_side('changes') }} as changes
            {%- else %}
            select
                cast(null as varchar) as from_record_id,
                cast(null as varchar) as to_record_id
            where false
            {%- endif %}
        ),

        new_nodes as (
            select nodes.node_id as record_id from {{ work }}nodes as nodes
            except
            select built.record_id from {{ this }} as built
        ),

        touched as (
            select changed_edges.from_record_id as record_id from changed_edges
            union
            select changed_edges.to_record_id as record_id from changed_edges
            union
            select new_nodes.record_id from new_nodes
            union
            -- the other ends of a new node's edges
            select edges.to_record_id as record_id
            from {{ ref('int_identity_edges') }} as edges
            where edges.from_record_id in (select new_nodes.record_id from new_nodes)
            union
            select edges.from_record_id as record_id
            from {{ ref('int_identity_edges') }} as edges
            where edges.to_record_id in (select new_nodes.record_id from new_nodes)
            union
            select removed.record_id from {{ work }}removed as removed
        ),

        affected_components as (
            select distinct built.component_record_id
            from {{ this }} as built
            inner join touched on built.record_id = touched.record_id
        )

        select nodes.node_id
        from {{ work }}nodes as nodes
        where
            nodes.node_id in (select touched.record_id from touched)
            or nodes.node_id in (
                select built.record_id
                from {{ this }} as built
                inner join affected_components
                    on built.component_record_id = affected_components.component_record_id
            )
    {%- endset -%}
    {%- do run_query(affected_sql) -%}
    {%- set counts = run_query(
        'select (select count(*) from ' ~ work ~ 'affected), (select count(*) from ' ~ work
        ~ 'removed), (select count(*) from ' ~ work ~ 'nodes)'
    ).rows[0] -%}
    {{ log("identity components: recomputing " ~ counts[0] ~ " of " ~ counts[2] ~ " nodes, " ~ counts[1] ~ " no longer nodes", info=true) }}
    {%- set result = namespace(nodes_sql='select affected.node_id from ' ~ work ~ 'affected as affected') -%}
    {{ return(result) }}
{%- endmacro %}

{#- post-hook: delete the records that stopped being nodes (incremental builds), keep the
    id of the edges build this build read (none when the edges keep no build record: the
    next build computes every component). -#}
{% macro identity_components_finish() -%}
    {%- if execute and target.type != 'spark' -%}
        {%- set work = connected_components_work_prefix() -%}
        {#- made by identity_components_affected in this build (not in dbt's relation cache) -#}
        {%- set present = work_tables_present('__cc_') -%}
        {%- set removed_kept = this.identifier ~ '__cc_removed' in present -%}
        {%- if removed_kept -%}
            {%- do run_query(
                'delete from ' ~ this ~ ' where record_id in (select removed.record_id from '
                ~ work ~ 'removed as removed)'
            ) -%}
        {%- endif -%}
        {%- set edges = identity_components_edges_build() -%}
        {%- do run_query(
            'create or replace table ' ~ identity_components_edges_read() ~ ' as select '
            ~ ("'" ~ edges[0] ~ "'" if edges else 'cast(null as varchar)') ~ ' as edges_build_id'
        ) -%}
        {{ identity_components_keep_changes(this.identifier ~ '__cc_affected' in present) }}
        {#- the copy of the edges that earlier versions of this macro kept -#}
        {%- do run_query('drop table if exists ' ~ this.database ~ '.' ~ this.schema ~ '.' ~ this.identifier ~ '__edges_built') -%}
    {%- endif -%}
{%- endmacro %}

{#- What this build changed, for int_source_records_resolved (macros/source_records.sql):
    `<model>__last_build` (one row: build_id, the dbt invocation; base_build_id, the build
    before it; has_changes) and, on an incremental build, the records it recomputed or
    deleted (`<model>__changed_records`): every other record kept its row, and so its
    customer_id. Part of the post-hook; the work tables are still there. -#}
{% macro identity_components_keep_changes(incremental) -%}
    {%- set work = connected_components_work_prefix() -%}
    {%- set side = this.database ~ '.' ~ this.schema ~ '.' ~ this.identifier -%}
    {%- set last = side ~ '__last_build' -%}
    {%- do run_query('create table if not exists ' ~ last ~ ' (build_id varchar, base_build_id varchar, has_changes boolean)') -%}
    {%- set base = run_query('select max(build_id) from ' ~ last).rows[0][0] -%}
    {%- do run_query('drop table if exists ' ~ side ~ '__changed_records') -%}
    {%- if incremental -%}
        {%- do run_query(
            'create table ' ~ side ~ '__changed_records as select affected.node_id as record_id from ' ~ work
            ~ 'affected as affected union select removed.record_id from ' ~ work ~ 'removed as removed'
        ) -%}
    {%- endif -%}
    {%- do run_query(
        'create or replace table ' ~ last ~ " as select '" ~ invocation_id ~ "' as build_id, "
        ~ ("'" ~ base ~ "'" if base else 'cast(null as varchar)') ~ ' as base_build_id, '
        ~ ('true' if incremental else 'false') ~ ' as has_changes'
    ) -%}
{%- endmacro %}
