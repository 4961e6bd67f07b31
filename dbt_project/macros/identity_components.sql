{#- Incremental identity components (int_identity_components_resolved, DuckDB only; on
    Spark the model is a table). A build keeps the identity edges it used in
    `<model>__edges_built`; the next incremental build finds the records touched since:
    the ends of every edge that appeared or disappeared, the records that became nodes and
    those that stopped being nodes. Every component of {{ this }} with a touched record is
    recomputed whole (with the new nodes); the others keep their rows. Work tables
    `<model>__cc_affected` / `__cc_removed` are dropped by connected_components_cleanup. -#}

{% macro identity_components_edges_built() -%}
    {{ return(adapter.get_relation(this.database, this.schema, this.identifier ~ '__edges_built')) }}
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
    {%- set edges_built = identity_components_edges_built() -%}
    {%- if edges_built is none -%}
        {{ log("identity components: no edges of an earlier build kept, every component computed", info=true) }}
        {{ return(none) }}
    {%- endif -%}
    {%- set affected_sql -%}
        create or replace table {{ work }}affected as
        with
        current_edges as (
            select edges.from_record_id, edges.to_record_id
            from {{ ref('int_identity_edges') }} as edges
        ),

        kept_edges as (
            select kept.from_record_id, kept.to_record_id
            from {{ edges_built }} as kept
        ),

        changed_edges as (
            (select * from current_edges except select * from kept_edges)
            union all
            (select * from kept_edges except select * from current_edges)
        ),

        touched as (
            select changed_edges.from_record_id as record_id from changed_edges
            union
            select changed_edges.to_record_id as record_id from changed_edges
            union
            (select nodes.node_id as record_id from {{ work }}nodes as nodes
             except select built.record_id from {{ this }} as built)
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
    edges this build used for the next one: only those between two of its nodes, so that
    an edge kept while one of its ends was no node (inputs built apart, e.g. `dbt run
    --select` of the edges alone) counts as new once both ends are nodes. -#}
{% macro identity_components_finish() -%}
    {%- if execute and target.type != 'spark' -%}
        {%- set work = connected_components_work_prefix() -%}
        {#- made by identity_components_affected in this build (not in dbt's relation cache) -#}
        {%- set removed_kept = this.identifier ~ '__cc_removed' in work_tables_present('__cc_') -%}
        {%- if removed_kept -%}
            {%- do run_query(
                'delete from ' ~ this ~ ' where record_id in (select removed.record_id from '
                ~ work ~ 'removed as removed)'
            ) -%}
        {%- endif -%}
        {%- do run_query(
            'create or replace table ' ~ this.database ~ '.' ~ this.schema ~ '.' ~ this.identifier
            ~ '__edges_built as select edges.from_record_id, edges.to_record_id from '
            ~ ref('int_identity_edges') ~ ' as edges where edges.from_record_id in (select built.record_id from '
            ~ this ~ ' as built) and edges.to_record_id in (select built.record_id from ' ~ this ~ ' as built)'
        ) -%}
    {%- endif -%}
{%- endmacro %}
