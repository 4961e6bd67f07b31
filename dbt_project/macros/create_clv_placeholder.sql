{#- The CLV scores are written by a Python asset (pipelines/models). So that the dbt
    project also builds standalone (tests, first run), create the schema and an EMPTY
    table with the agreed columns when they do not exist yet. Never touches existing data. -#}
{% macro create_clv_placeholder() -%}
    {{ return(adapter.dispatch('create_clv_placeholder', 'crm_warehouse')()) }}
{%- endmacro %}

{#- Spark: clv.customer_scores is a table over the exported scores
    (register_external_sources, macros/engines.sql). -#}
{% macro spark__create_clv_placeholder() -%}
{%- endmacro %}

{% macro default__create_clv_placeholder() -%}
    {%- if execute -%}
        create schema if not exists clv;
        create table if not exists clv.customer_scores (
            customer_id string,
            p_alive double,
            expected_purchases_90d double,
            clv_365d decimal(18, 2),
            is_stale boolean,
            scored_as_of date
        );
    {%- endif -%}
{%- endmacro %}
