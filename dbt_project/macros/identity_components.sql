{#- Incremental identity components (int_identity_components_resolved, DuckDB only; on
    Spark the model is a table). int_identity_edges keeps the edges that appeared or
    disappeared in its last build (`int_identity_edges__changes`, macros/identity_edges.sql)
    and `<model>__last_build` records the edges build this model read
    (macros/build_records.sql). When the edges were built exactly once since (or not at
    all), an incremental build finds the records touched since: the ends of every edge that
    appeared or disappeared, the records that became nodes and the other ends of their
    edges (an edge kept while one of its ends was no node links two old components once
    both are), and those that stopped being nodes. Every component of {{ this }} with a
    touched record is recomputed whole (with the new nodes); the others keep their rows.
    Otherwise (the edges built twice since, or whole, or no edges build recorded; a change
    of the model or these macros; the first night after an upgrade) every component is
    computed. Work tables `<model>__cc_affected` / `__cc_removed` are dropped by
    connected_components_cleanup. -#}

{#- 'changes' (the edges were built once since the build this model read: their changes
    are kept), 'unchanged' (not built since), or why every component is computed. -#}
{% macro identity_components_edges_decision() -%}
    {%- set own = own_build_decision(sql_fingerprint()) -%}
    {%- if own.reason is not none -%}
        {{ return(own.reason) }}
    {%- endif -%}
    {{ return(upstream_change('int_identity_edges', own.kept.read.get('int_identity_edges'), ['changes'])) }}
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
            from {{ side_table('changes', ref('int_identity_edges')) }} as changes
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

{#- post-hook: delete the records that stopped being nodes (incremental builds), keep what
    this build changed and record it with the edges build it read (none when the edges
    keep no build record: the next build computes every component). -#}
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
        {{ identity_components_keep_changes(this.identifier ~ '__cc_affected' in present) }}
        {#- what earlier versions of these macros kept: a copy of the edges, the edges
            build read -#}
        {%- for name in ['edges_built', 'edges_read'] -%}
            {%- do run_query('drop table if exists ' ~ side_table(name)) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#- What this build changed, for int_source_records_resolved (macros/source_records.sql):
    the build's record in `<model>__last_build` (macros/build_records.sql: has_changes on
    an incremental build, and the edges build it read) and, on an incremental build, the
    records it recomputed or deleted (`<model>__changed_records`): every other record kept
    its row, and so its customer_id. Part of the post-hook; the work tables are still
    there. -#}
{% macro identity_components_keep_changes(incremental) -%}
    {%- set work = connected_components_work_prefix() -%}
    {%- set changed = side_table('changed_records') -%}
    {%- do run_query('drop table if exists ' ~ changed) -%}
    {%- if incremental -%}
        {%- do run_query(
            'create table ' ~ changed ~ ' as select affected.node_id as record_id from ' ~ work
            ~ 'affected as affected union select removed.record_id from ' ~ work ~ 'removed as removed'
        ) -%}
    {%- endif -%}
    {{ keep_build_record(incremental, sql_fingerprint(), ['int_identity_edges']) }}
{%- endmacro %}
