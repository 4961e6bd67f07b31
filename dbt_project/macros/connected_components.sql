{#- Connected components by minimum-label propagation.

    `nodes_sql` is a query with a column `node_id`; `edges_sql` a query with
    `from_node_id`, `to_node_id` that holds BOTH directions of every undirected edge. Returns a select of
    (node_id, component_node_id) where component_node_id is the smallest node_id of the
    node's component (so it is stable as long as the records of the component do not
    change).

    In rounds, in work tables named `<model>__cc_*` (dropped after the build by the
    post-hook `connected_components_cleanup`), until a round changes no label; the build
    fails after var identity_max_rounds (100) rounds. DuckDB (default__, at the end of
    this file): only the labels that drop are updated and propagate in the next round.
    Spark (spark__): every label is rewritten each round, with pointer jumping.

    Every round is plain joins and aggregates, which DuckDB spills to disk beyond its
    memory limit. (A recursive CTE with USING KEY, used before, keeps its whole label
    dictionary in memory: with the 4 GB limit the large preset's build failed with "Out of
    Memory" in it. Spark has no recursive CTE with UNION at all.) -#}
{% macro connected_components(nodes_sql, edges_sql) -%}
    {#- the rounds write work tables: only when the model is built (`dbt run` / `dbt
        build`), not when it is only compiled (`dbt compile`, `dbt docs generate`, which
        the publication runs) nor in unit tests -#}
    {%- if execute and (model.resource_type == 'unit_test' or flags.WHICH not in ['run', 'build']) -%}
        {{ return(connected_components_in_one_query(nodes_sql, edges_sql)) }}
    {%- endif -%}
    {{ return(adapter.dispatch('connected_components', 'crm_warehouse')(nodes_sql, edges_sql)) }}
{%- endmacro %}

{#- dbt unit tests give a model its inputs as CTEs of one query, which work tables cannot
    read, and a model only compiled (docs) must not write work tables: there the same
    propagation is written inside the query, as a recursive CTE with
    DuckDB's USING KEY (one row per node; only the nodes whose label dropped feed the
    next round; it stops by itself). Fine for fixtures, not for the large preset (the
    recursion's label dictionary stays in memory). Builds always take the rounds below;
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

{#- The end of both versions of the rounds: fail when labels still changed in the last
    allowed round, else log how many rounds it took. -#}
{% macro connected_components_converged(changed, rounds, max_rounds) -%}
    {%- if changed > 0 -%}
        {{ exceptions.raise_compiler_error(
            "identity components did not converge in " ~ max_rounds ~ " rounds; raise var identity_max_rounds"
        ) }}
    {%- endif -%}
    {{ log("connected components: " ~ rounds ~ " rounds", info=false) }}
{%- endmacro %}

{% macro connected_components_work_prefix() -%}
    {{ return(work_prefix('__cc_')) }}
{%- endmacro %}

{#- post-hook of the model that calls connected_components: drop its work tables (one
    statement each: Spark runs one statement per call). -#}
{% macro connected_components_cleanup() -%}
    {%- if execute -%}
        {%- for name in ['edges', 'a', 'b', 'labels', 'active', 'updates', 'nodes', 'affected', 'removed'] -%}
            {%- do run_query('drop table if exists ' ~ connected_components_work_prefix() ~ name) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#- Spark: no UPDATE on Parquet tables, so each round rewrites every label, alternating
    between `__cc_a` and `__cc_b`: propagation, then pointer jumping (label := label of
    label), which roughly halves the remaining distance per round. -#}
{% macro spark__connected_components(nodes_sql, edges_sql) -%}
    {%- if not execute -%}
        {{ return('select cast(null as string) as node_id, cast(null as string) as component_node_id') }}
    {%- endif -%}
    {%- set work = connected_components_work_prefix() -%}
    {%- set using = 'using parquet' -%}
    {%- set rounds = var('identity_max_rounds', 100) -%}
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
    {{ connected_components_converged(state.changed, state.rounds, rounds) }}
    select node_id, component_node_id from {{ work ~ state.current }}
{%- endmacro %}

{#- DuckDB: only the nodes whose label dropped in the last round propagate in the next one
    (as a recursive CTE with USING KEY would, but in tables, so that every step spills):
    `__cc_labels` holds one label per node; a round proposes to the neighbours of the
    active nodes the smallest of their labels, keeps the proposals below the current
    label, jumps them once (label := label of the proposed label, never larger and of the
    same component), writes them into `__cc_labels` (UPDATE) and makes them the next
    round's active nodes. The first round (every node active) costs a full pass; the
    later ones only the changes. -#}
{% macro default__connected_components(nodes_sql, edges_sql) -%}
    {%- if not execute -%}
        {{ return('select cast(null as string) as node_id, cast(null as string) as component_node_id') }}
    {%- endif -%}
    {%- set work = connected_components_work_prefix() -%}
    {%- set rounds = var('identity_max_rounds', 100) -%}
    {%- do run_query('create or replace table ' ~ work ~ 'edges as ' ~ edges_sql) -%}
    {%- do run_query(
        'create or replace table ' ~ work ~ 'labels as select node_id, node_id as component_node_id from ('
        ~ nodes_sql ~ ') as nodes'
    ) -%}
    {%- do run_query('create or replace table ' ~ work ~ 'active as select * from ' ~ work ~ 'labels') -%}
    {%- set state = namespace(changed=1, rounds=0) -%}
    {%- for round in range(rounds) if state.changed > 0 -%}
        {%- set state.rounds = state.rounds + 1 -%}
        {%- set round_sql -%}
            create or replace table {{ work }}updates as
            with proposed as (
                select
                    edges.to_node_id as node_id,
                    min(active.component_node_id) as component_node_id
                from {{ work }}active as active
                inner join {{ work }}edges as edges
                    on active.node_id = edges.from_node_id
                group by edges.to_node_id
            ),

            lowered as (
                select
                    proposed.node_id,
                    proposed.component_node_id
                from proposed
                inner join {{ work }}labels as current_labels
                    on proposed.node_id = current_labels.node_id
                where proposed.component_node_id < current_labels.component_node_id
            )

            select
                lowered.node_id,
                least(lowered.component_node_id, coalesce(jumped.component_node_id, lowered.component_node_id))
                    as component_node_id
            from lowered
            left join {{ work }}labels as jumped
                on lowered.component_node_id = jumped.node_id
        {%- endset -%}
        {%- do run_query(round_sql) -%}
        {%- set state.changed = run_query('select count(*) from ' ~ work ~ 'updates').columns[0].values()[0] -%}
        {%- if state.changed > 0 -%}
            {%- do run_query(
                'update ' ~ work ~ 'labels as labels set component_node_id = updates.component_node_id from '
                ~ work ~ 'updates as updates where labels.node_id = updates.node_id'
            ) -%}
            {%- do run_query('create or replace table ' ~ work ~ 'active as select * from ' ~ work ~ 'updates') -%}
        {%- endif -%}
    {%- endfor -%}
    {{ connected_components_converged(state.changed, state.rounds, rounds) }}
    select node_id, component_node_id from {{ work }}labels
{%- endmacro %}
