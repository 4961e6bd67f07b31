{#- Connected components by minimum-label propagation.

    `nodes_cte` has a column `node_id`; `edges_cte` has `from_node_id`, `to_node_id` and
    must hold BOTH directions of every undirected edge. Returns a select of
    (node_id, component_node_id) where component_node_id is the smallest node_id of the
    node's component (so it is stable as long as the records of the component do not
    change).

    DuckDB: a recursive CTE with USING KEY keeps one row per node (a key-value
    dictionary) and only feeds the nodes whose label dropped in the last round to the
    next round, so a round costs O(changed nodes x degree), not O(all nodes); a chain of
    length L converges in L rounds and the recursion stops by itself (no round limit). -#}
{% macro connected_components(nodes_cte, edges_cte) -%}
    {{ return(adapter.dispatch('connected_components', 'crm_warehouse')(nodes_cte, edges_cte)) }}
{%- endmacro %}

{% macro duckdb__connected_components(nodes_cte, edges_cte) -%}
    with recursive labels (node_id, component_node_id) using key (node_id) as (
        select
            node_id,
            node_id as component_node_id
        from {{ nodes_cte }}

        union

        select
            edges.to_node_id as node_id,
            min(labels.component_node_id) as component_node_id
        from labels
        inner join {{ edges_cte }} as edges
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

{#- Engines without recursive CTEs (Spark): a fixed number of rounds, each one step of
    label propagation followed by pointer jumping (label := label of label), unrolled by
    Jinja. Pointer jumping roughly halves the remaining distance per round, so
    var identity_max_rounds (default 30) covers chains far longer than any real
    component; the test `assert_identity_components_converged` fails if a further round
    would still change a label. -#}
{% macro default__connected_components(nodes_cte, edges_cte) -%}
    {%- set rounds = var('identity_max_rounds', 30) -%}
    with labels_0 as (
        select
            node_id,
            node_id as component_node_id
        from {{ nodes_cte }}
    ),
    {% for round in range(1, rounds + 1) %}
    propagated_{{ round }} as (
        select
            labels.node_id,
            least(labels.component_node_id, coalesce(min(neighbours.component_node_id), labels.component_node_id)) as component_node_id
        from labels_{{ round - 1 }} as labels
        left join {{ edges_cte }} as edges
            on labels.node_id = edges.from_node_id
        left join labels_{{ round - 1 }} as neighbours
            on edges.to_node_id = neighbours.node_id
        group by labels.node_id, labels.component_node_id
    ),

    labels_{{ round }} as (
        select
            propagated.node_id,
            least(propagated.component_node_id, jumped.component_node_id) as component_node_id
        from propagated_{{ round }} as propagated
        left join propagated_{{ round }} as jumped
            on propagated.component_node_id = jumped.node_id
    ){{ "," if not loop.last }}
    {% endfor %}

    select
        node_id,
        component_node_id
    from labels_{{ rounds }}
{%- endmacro %}
