{#- Stable surrogate key: md5 of the text (customer_id, ids of long rows). -#}
{% macro hash_key(text_sql) -%}
    md5(cast({{ text_sql }} as varchar))
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
