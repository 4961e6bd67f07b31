{#- Stable surrogate key: md5 of the text (ids of long rows; not for people). -#}
{% macro hash_key(text_sql) -%}
    md5(cast({{ text_sql }} as varchar))
{%- endmacro %}

{#- Keyed pseudonym of a person's identifier (customer_id, social accounts): HMAC-SHA256
    with the project's secret key, 32 hex characters. On DuckDB the function is the UDF
    crm_pseudonym() that the profile's plugin registers (pipelines/lib/dbt_plugin.py), so
    the key never appears in SQL. -#}
{% macro pseudonym(text_sql) -%}
    {{ return(adapter.dispatch('pseudonym', 'crm_warehouse')(text_sql)) }}
{%- endmacro %}

{% macro default__pseudonym(text_sql) -%}
    crm_pseudonym(cast({{ text_sql }} as varchar))
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
