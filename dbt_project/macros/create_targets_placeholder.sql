{#- The SMART targets are the managers' file (setting CRM_TARGETS_FILE), which the pipeline
    validates and loads into targets.kpi_targets before dbt runs (pipelines/targets). So
    that the dbt project also builds standalone (tests, a bare `dbt build`), create the
    schema and an EMPTY table with the file's columns when they do not exist yet. Never
    touches existing rows. -#}
{% macro create_targets_placeholder() -%}
    {{ return(adapter.dispatch('create_targets_placeholder', 'crm_warehouse')()) }}
{%- endmacro %}

{#- Spark: targets.kpi_targets is a table over the Parquet file `crm spark build` writes
    from the targets file (register_external_sources, macros/engines.sql). -#}
{% macro spark__create_targets_placeholder() -%}
{%- endmacro %}

{% macro default__create_targets_placeholder() -%}
    {%- if execute -%}
        create schema if not exists targets;
        create table if not exists targets.kpi_targets (
            target_id varchar,
            kpi varchar,
            segment varchar,
            baseline_period varchar,
            target_value varchar,
            direction varchar,
            start_date date,
            due_date date,
            owner varchar,
            description_en varchar,
            description_zh varchar
        );
    {%- endif -%}
{%- endmacro %}
