{#- Connected components by minimum-label propagation.

    `nodes_sql` is a query with a column `node_id`; `edges_sql` a query with
    `from_node_id`, `to_node_id` that holds BOTH directions of every undirected edge. Returns a select of
    (node_id, component_node_id) where component_node_id is the smallest node_id of the
    node's component (so it is stable as long as the records of the component do not
    change).

    One round at a time, each written to a work table, alternating between
    `<model>__cc_a` and `<model>__cc_b` (plus `<model>__cc_edges`; dropped after the
    build by the post-hook `connected_components_cleanup`): a round propagates the
    smallest label of each node's neighbours, then jumps pointers (label := label of
    label), until a round changes no label. Pointer jumping roughly halves the remaining
    distance per round, so var identity_max_rounds (30) covers chains far longer than any
    real component (3 rounds on the small preset); the build fails if the labels still
    change after it.

    Every round is plain joins and aggregates, which DuckDB spills to disk beyond its
    memory limit. (A recursive CTE with USING KEY, used before, keeps its whole label
    dictionary in memory: with the 4 GB limit the large preset's build failed with "Out of
    Memory" in it. Spark has no recursive CTE with UNION at all.) -#}
{% macro connected_components(nodes_sql, edges_sql) -%}
    {%- if execute and model.resource_type == 'unit_test' -%}
        {{ return(connected_components_in_one_query(nodes_sql, edges_sql)) }}
    {%- endif -%}
    {{ return(adapter.dispatch('connected_components', 'crm_warehouse')(nodes_sql, edges_sql)) }}
{%- endmacro %}

{#- dbt unit tests give a model its inputs as CTEs of one query, which work tables cannot
    read: there the same propagation runs inside the query, as a recursive CTE with
    DuckDB's USING KEY (one row per node; only the nodes whose label dropped feed the
    next round; it stops by itself). Fine for fixtures, not for the large preset (the
    recursion's label dictionary stays in memory). Builds always take the rounds above;
    the singular test assert_identity_components_converged checks their result on every
    build (no edge across components, each labelled by its smallest record). Spark runs
    no unit tests (`crm spark build` excludes them). -#}
{% macro connected_components_in_one_query(nodes_sql, edges_sql) -%}
    with recursive
    component_nodes as (
        {{ nodes_sql }}
    ),

    component_edges as (
        {{ edges_sql }}
    ),

    labels (node_id, component_node_id) using key (node_id) as (
        select
            node_id,
            node_id as component_node_id
        from component_nodes

        union

        select
            edges.to_node_id as node_id,
            min(labels.component_node_id) as component_node_id
        from labels
        inner join component_edges as edges
            on labels.node_id = edges.from_node_id
        inner join recurring.labels as current_labels
            on edges.to_node_id = current_labels.node_id
        group by edges.to_node_id
        having min(labels.component_node_id) < min(current_labels.component_node_id)
    )

    select
        node_id,
        component_node_id
    from labels
{%- endmacro %}

{% macro connected_components_work_prefix() -%}
    {{ return((this.database ~ '.' if this.database else '') ~ this.schema ~ '.' ~ this.identifier ~ '__cc_') }}
{%- endmacro %}

{#- The work tables' storage clause: none on DuckDB, Parquet on Spark. -#}
{% macro connected_components_table_options() -%}
    {{ return(adapter.dispatch('connected_components_table_options', 'crm_warehouse')()) }}
{%- endmacro %}

{% macro default__connected_components_table_options() -%}
    {{ return('') }}
{%- endmacro %}

{% macro spark__connected_components_table_options() -%}
    {{ return('using parquet') }}
{%- endmacro %}

{#- post-hook of the model that calls connected_components: drop its work tables. -#}
{% macro connected_components_cleanup() -%}
    {%- for name in ['edges', 'a', 'b'] %}
    drop table if exists {{ connected_components_work_prefix() ~ name }};
    {%- endfor %}
{%- endmacro %}

{% macro default__connected_components(nodes_sql, edges_sql) -%}
    {%- if not execute -%}
        {{ return('select cast(null as string) as node_id, cast(null as string) as component_node_id') }}
    {%- endif -%}
    {%- set work = connected_components_work_prefix() -%}
    {%- set using = connected_components_table_options() -%}
    {%- set rounds = var('identity_max_rounds', 30) -%}
    {%- for name in ['edges', 'a', 'b'] -%}
        {%- do run_query('drop table if exists ' ~ work ~ name) -%}
    {%- endfor -%}
    {%- do run_query('create table ' ~ work ~ 'edges ' ~ using ~ ' as ' ~ edges_sql) -%}
    {%- do run_query(
        'create table ' ~ work ~ 'a ' ~ using ~ ' as select node_id, node_id as component_node_id from ('
        ~ nodes_sql ~ ') as nodes'
    ) -%}
    {%- set state = namespace(current='a', changed=1, rounds=0) -%}
    {%- for round in range(rounds) if state.changed > 0 -%}
        {%- set previous = work ~ state.current -%}
        {%- set state.current = 'b' if state.current == 'a' else 'a' -%}
        {%- set state.rounds = state.rounds + 1 -%}
        {%- set next = work ~ state.current -%}
        {%- do run_query('drop table if exists ' ~ next) -%}
        {%- set round_sql -%}
            create table {{ next }} {{ using }} as
            with propagated as (
                select
                    labels.node_id,
                    least(labels.component_node_id, coalesce(min(neighbours.component_node_id), labels.component_node_id)) as component_node_id
                from {{ previous }} as labels
                left join {{ work }}edges as edges
                    on labels.node_id = edges.from_node_id
                left join {{ previous }} as neighbours
                    on edges.to_node_id = neighbours.node_id
                group by labels.node_id, labels.component_node_id
            )
            select
                propagated.node_id,
                least(propagated.component_node_id, coalesce(jumped.component_node_id, propagated.component_node_id)) as component_node_id
            from propagated
            left join propagated as jumped
                on propagated.component_node_id = jumped.node_id
        {%- endset -%}
        {%- do run_query(round_sql) -%}
        {%- set state.changed = run_query(
            'select count(*) from ' ~ next ~ ' as next_labels inner join ' ~ previous
            ~ ' as previous_labels on next_labels.node_id = previous_labels.node_id'
            ~ ' where next_labels.component_node_id <> previous_labels.component_node_id'
        ).columns[0].values()[0] -%}
    {%- endfor -%}
    {%- if state.changed > 0 -%}
        {{ exceptions.raise_compiler_error(
            "identity components did not converge in " ~ rounds ~ " rounds; raise var identity_max_rounds"
        ) }}
    {%- endif -%}
    {{ log("connected components: " ~ state.rounds ~ " rounds", info=false) }}
    select node_id, component_node_id from {{ work ~ state.current }}
{%- endmacro %}
