{#- dbt's built-in `unique` test, same result (one row per duplicated value: unique_field,
    n_records), cheaper on DuckDB. The built-in groups every row by the value itself; on
    the large facts (tens of millions of varchar keys) that hash table is most of a night's
    test time. Here the rows are first grouped by a 64-bit hash of the value, and only the
    values whose hash occurs more than once (the duplicates, and the rare hash collisions
    between different values) are grouped by the value, so the answer is exact
    (docs/performance.md). Other engines run dbt's SQL. -#}
{% test unique(model, column_name) %}
    {{ return(adapter.dispatch('crm_test_unique', 'crm_warehouse')(model, column_name)) }}
{% endtest %}

{% macro default__crm_test_unique(model, column_name) %}
    {{ return(dbt.default__test_unique(model, column_name)) }}
{% endmacro %}

{% macro duckdb__crm_test_unique(model, column_name) %}
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
