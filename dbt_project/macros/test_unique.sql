{#- DuckDB's implementation of dbt's built-in `unique` test: the test stays dbt's own (its
    name, its metadata, the primary keys dbt tooling reads from it); dbt dispatches
    `test_unique` in the `dbt` namespace to the root project first, so this macro only
    replaces the SQL on DuckDB. Same result as `dbt.default__test_unique` (one row per
    duplicated value: unique_field, n_records), cheaper: the built-in groups every row by the
    value itself, and on the large facts (tens of millions of varchar keys) that hash table
    is most of a night's test time. Here the rows are first grouped by a 64-bit hash of the
    value, and only the values whose hash occurs more than once (the duplicates, and the rare
    hash collisions between different values) are grouped by the value, so the answer is
    exact (docs/performance.md). It reads the model twice: a model built as a view (computed
    on each read) gets dbt's SQL, as do other engines. Caveat: `hash()` ignores a column's
    collation where `group by` applies it; no model declares one. -#}
{% macro duckdb__test_unique(model, column_name) %}
{%- if crm_tested_model_is_view(model) -%}
    {{ return(dbt.default__test_unique(model, column_name)) }}
{%- endif %}
with repeated_hashes as (
    select hash({{ column_name }}) as value_hash
    from {{ model }}
    where {{ column_name }} is not null
    group by hash({{ column_name }})
    having count(*) > 1
)

select
    {{ column_name }} as unique_field,
    count(*) as n_records
from {{ model }}
where
    {{ column_name }} is not null
    and hash({{ column_name }}) in (select repeated_hashes.value_hash from repeated_hashes)
group by {{ column_name }}
having count(*) > 1
{% endmacro %}

{#- Whether the relation a generic test reads (its `where` config may wrap it in a
    subquery) is a model materialized as a view. -#}
{% macro crm_tested_model_is_view(model) -%}
    {%- if execute -%}
        {%- set text = model | string -%}
        {%- for node in graph.nodes.values()
            if node.resource_type == 'model' and node.relation_name and node.relation_name in text -%}
            {{ return(node.config.materialized == 'view') }}
        {%- endfor -%}
    {%- endif -%}
    {{ return(false) }}
{%- endmacro %}
