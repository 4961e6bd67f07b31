{#- Custom schemas are used verbatim (staging, intermediate, restricted, marts, seeds),
    so that BI tools and the Python assets find `marts.fct_orders`, not `main_marts`. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
