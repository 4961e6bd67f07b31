{#- Stable surrogate key: md5 of the text (ids of long rows; not for people). -#}
{% macro hash_key(text_sql) -%}
    md5(cast({{ text_sql }} as string))
{%- endmacro %}

{#- Keyed pseudonym of a person's identifier (customer_id, social accounts): HMAC-SHA256
    with the project's secret key, 32 hex characters. On DuckDB the function is the UDF
    crm_pseudonym() that the profile's plugin registers (pipelines/lib/dbt_plugin.py), so
    the key never appears in SQL. -#}
{% macro pseudonym(text_sql) -%}
    {{ return(adapter.dispatch('pseudonym', 'crm_warehouse')(text_sql)) }}
{%- endmacro %}

{% macro default__pseudonym(text_sql) -%}
    crm_pseudonym(cast({{ text_sql }} as string))
{%- endmacro %}

{#- Spark: HMAC-SHA256 in SQL, H((K xor opad) || H((K xor ipad) || text)), with the two
    padded keys taken from the Spark driver's environment, where `crm spark build` puts
    them as dbt secrets (DBT_ENV_SECRET_*: dbt keeps them out of its logs). The SQL,
    the logs and target/ only hold `${env:DBT_ENV_SECRET_CRM_PSEUDONYM_IPAD}`, which Spark
    substitutes when it runs the statement. Same 32 hex characters as the DuckDB UDF
    (tests/test_spark.py). -#}
{% macro spark__pseudonym(text_sql) -%}
    substr(sha2(concat(
        unhex('${env:DBT_ENV_SECRET_CRM_PSEUDONYM_OPAD}'),
        unhex(sha2(concat(unhex('${env:DBT_ENV_SECRET_CRM_PSEUDONYM_IPAD}'), encode(cast({{ text_sql }} as string), 'UTF-8')), 256))
    ), 256), 1, 32)
{%- endmacro %}

{#- Continuous percentile (linear interpolation between neighbours). -#}
{% macro percentile_cont(expr, fraction) -%}
    {{ return(adapter.dispatch('percentile_cont', 'crm_warehouse')(expr, fraction)) }}
{%- endmacro %}

{% macro default__percentile_cont(expr, fraction) -%}
    quantile_cont({{ expr }}, {{ fraction }})
{%- endmacro %}

{% macro spark__percentile_cont(expr, fraction) -%}
    percentile({{ expr }}, {{ fraction }})
{%- endmacro %}

{#- numerator / denominator as a double, NULL when the denominator is 0 or NULL. -#}
{% macro safe_ratio(numerator, denominator) -%}
    cast({{ numerator }} as double) / nullif(cast({{ denominator }} as double), 0)
{%- endmacro %}

{#- `value` of the row with the smallest (largest) `ordering` among the rows where `value`
    is known: DuckDB's arg_min / arg_max skip NULL values, Spark's min_by / max_by do not,
    so the ordering is nulled where the value is. Same result on both engines. -#}
{% macro min_by_known(value, ordering) -%}
    min_by({{ value }}, case when {{ value }} is not null then {{ ordering }} end)
{%- endmacro %}

{% macro max_by_known(value, ordering) -%}
    max_by({{ value }}, case when {{ value }} is not null then {{ ordering }} end)
{%- endmacro %}

{#- Partial regular-expression match (RE2 on DuckDB, Java regex on Spark: the patterns of
    this project use the syntax both share). Spark is configured with
    spark.sql.parser.escapedStringLiterals=true (profiles.yml), so a backslash in a
    literal means the same on both engines. -#}
{% macro regex_matches(text_sql, pattern_sql) -%}
    {{ return(adapter.dispatch('regex_matches', 'crm_warehouse')(text_sql, pattern_sql)) }}
{%- endmacro %}

{% macro default__regex_matches(text_sql, pattern_sql) -%}
    regexp_matches({{ text_sql }}, {{ pattern_sql }})
{%- endmacro %}

{% macro spark__regex_matches(text_sql, pattern_sql) -%}
    ({{ text_sql }} rlike {{ pattern_sql }})
{%- endmacro %}

{#- Replace every match of a regular expression. -#}
{% macro regex_replace_all(text_sql, pattern_sql, replacement_sql) -%}
    {{ return(adapter.dispatch('regex_replace_all', 'crm_warehouse')(text_sql, pattern_sql, replacement_sql)) }}
{%- endmacro %}

{% macro default__regex_replace_all(text_sql, pattern_sql, replacement_sql) -%}
    regexp_replace({{ text_sql }}, {{ pattern_sql }}, {{ replacement_sql }}, 'g')
{%- endmacro %}

{% macro spark__regex_replace_all(text_sql, pattern_sql, replacement_sql) -%}
    regexp_replace({{ text_sql }}, {{ pattern_sql }}, {{ replacement_sql }})
{%- endmacro %}

{#- Every column of the FROM item but `columns` (a list of names). -#}
{% macro star_except(columns) -%}
    {{ return(adapter.dispatch('star_except', 'crm_warehouse')(columns)) }}
{%- endmacro %}

{% macro default__star_except(columns) -%}
    * exclude ({{ columns | join(', ') }})
{%- endmacro %}

{% macro spark__star_except(columns) -%}
    * except ({{ columns | join(', ') }})
{%- endmacro %}

{#- Aggregate: `value` of the first row, in the order of `sort_keys`, among the rows where
    `value` is known. `sort_keys`: a list of (expression, 'asc' | 'desc'), NULLs last as in
    DuckDB's ORDER BY; a 'desc' key must be a timestamp. `rank`: optionally, a column
    numbering the rows of each group in that order without ties (a row_number() over the
    same keys); on DuckDB each aggregate then takes the row of the smallest rank instead of
    sorting the group again (twelve fields of the golden record: 11 -> 5.7 s at the large
    preset). -#}
{% macro first_known(value, sort_keys, rank=none) -%}
    {{ return(adapter.dispatch('first_known', 'crm_warehouse')(value, sort_keys, rank)) }}
{%- endmacro %}

{% macro default__first_known(value, sort_keys, rank=none) -%}
    {%- if rank is not none -%}
    arg_min({{ value }}, {{ rank }}) filter (where {{ value }} is not null)
    {%- else -%}
    first({{ value }} order by {{ sort_keys_sql(sort_keys) }})
    filter (where {{ value }} is not null)
    {%- endif -%}
{%- endmacro %}

{#- `sort_keys` (a list of (expression, 'asc' | 'desc')) as the list of an ORDER BY. -#}
{% macro sort_keys_sql(sort_keys) -%}
    {%- for key, direction in sort_keys %}{{ key }} {{ direction }}{{ ', ' if not loop.last }}{% endfor -%}
{%- endmacro %}

{#- Spark: min_by over a struct that sorts like the ORDER BY (a 'desc' key negated); the
    rank is not used. -#}
{% macro spark__first_known(value, sort_keys, rank=none) -%}
    min_by({{ value }}, case when {{ value }} is not null then struct(
        {%- for key, direction in sort_keys %}
        {{ key }} is null,
        {% if direction == 'desc' %}-unix_micros(cast({{ key }} as timestamp)){% else %}{{ key }}{% endif %}{{ ',' if not loop.last }}
        {%- endfor %}
    ) end)
{%- endmacro %}

{#- A raw table (`raw.<name>`), looked up in the graph rather than with source(): a
    source() call would make it an input of the model, which every dbt unit test of the
    model would then have to give. -#}
{% macro raw_relation(name) -%}
    {%- if not execute -%}
        {{ return('raw.' ~ name) }}
    {%- endif -%}
    {%- for node in graph.sources.values() if node.source_name == 'raw' and node.name == name -%}
        {{ return(node.relation_name) }}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error("source raw." ~ name ~ " is not declared") }}
{%- endmacro %}

{#- The name prefix of the current model's work tables: `<database>.<schema>.<model><suffix>`
    (a work table is that prefix and its own name). -#}
{% macro work_prefix(suffix) -%}
    {{ return((this.database ~ '.' if this.database else '') ~ this.schema ~ '.' ~ this.identifier ~ suffix) }}
{%- endmacro %}

{#- Whether a table exists now: tables made earlier in the same dbt invocation (e.g. by
    another model's post-hook) are not in dbt's relation cache (DuckDB). -#}
{% macro relation_exists_now(relation) -%}
    {{ return(run_query(
        "select count(*) from duckdb_tables() where database_name = '" ~ relation.database
        ~ "' and schema_name = '" ~ relation.schema ~ "' and table_name = '" ~ relation.identifier ~ "'"
    ).rows[0][0] > 0) }}
{%- endmacro %}

{#- The work tables of the current model that exist now, by full table name (`<model><suffix><name>`):
    made earlier in the same build, they are not in dbt's relation cache (DuckDB). -#}
{% macro work_tables_present(suffix) -%}
    {{ return(run_query(
        "select table_name from duckdb_tables() where database_name = '" ~ this.database
        ~ "' and schema_name = '" ~ this.schema ~ "' and starts_with(table_name, '" ~ this.identifier ~ suffix ~ "')"
    ).columns[0].values() | list) }}
{%- endmacro %}

{#- The last non-NULL value of `expr` in a window frame (write `over (...)` after it). -#}
{% macro last_known_value(expr) -%}
    {{ return(adapter.dispatch('last_known_value', 'crm_warehouse')(expr)) }}
{%- endmacro %}

{% macro default__last_known_value(expr) -%}
    last_value({{ expr }} ignore nulls)
{%- endmacro %}

{% macro spark__last_known_value(expr) -%}
    last_value({{ expr }}, true)
{%- endmacro %}
