{#- The business calendar is written by the pipeline from the `holidays` library before
    dbt runs (pipelines/business_calendar). So that the dbt project also builds standalone
    (tests, a bare `dbt build`), create the schema and an EMPTY table with its columns when
    they do not exist yet. Never touches existing rows. -#}
{% macro create_calendar_placeholder() -%}
    {{ return(adapter.dispatch('create_calendar_placeholder', 'crm_warehouse')()) }}
{%- endmacro %}

{#- Spark: calendar.business_days is a table over the Parquet file `crm spark build` writes
    (register_external_sources, macros/engines.sql). -#}
{% macro spark__create_calendar_placeholder() -%}
{%- endmacro %}

{% macro default__create_calendar_placeholder() -%}
    {%- if execute -%}
        create schema if not exists calendar;
        create table if not exists calendar.business_days (
            calendar_date date,
            iso_weekday integer,
            is_weekend boolean,
            is_public_holiday boolean,
            is_working_day boolean,
            day_kind varchar,
            holiday_name_zh varchar,
            holiday_name_en varchar,
            is_calendar_confirmed boolean,
            calendar_source varchar
        );
    {%- endif -%}
{%- endmacro %}
