{#- Raw timestamps are UTC without a zone. These macros derive business-timezone values
    (var business_timezone). DuckDB: timezone('UTC', ts) reads the naive value as UTC
    (timestamptz), timezone(tz, that) renders it as naive local time in tz. -#}
{% macro to_business_timestamp(column) -%}
    {{ return(adapter.dispatch('to_business_timestamp', 'crm_warehouse')(column)) }}
{%- endmacro %}

{% macro default__to_business_timestamp(column) -%}
    timezone('{{ var("business_timezone") }}', timezone('UTC', {{ column }}))
{%- endmacro %}

{% macro spark__to_business_timestamp(column) -%}
    from_utc_timestamp({{ column }}, '{{ var("business_timezone") }}')
{%- endmacro %}

{% macro to_business_date(column) -%}
    cast({{ to_business_timestamp(column) }} as date)
{%- endmacro %}

{#- The UTC instant at which business day `date_sql` ends (its next midnight, local). -#}
{% macro business_day_end_utc(date_sql) -%}
    {{ return(adapter.dispatch('business_day_end_utc', 'crm_warehouse')(date_sql)) }}
{%- endmacro %}

{% macro default__business_day_end_utc(date_sql) -%}
    timezone('UTC', timezone('{{ var("business_timezone") }}', cast({{ add_days(date_sql, 1) }} as timestamp)))
{%- endmacro %}

{% macro spark__business_day_end_utc(date_sql) -%}
    to_utc_timestamp(cast({{ add_days(date_sql, 1) }} as timestamp), '{{ var("business_timezone") }}')
{%- endmacro %}

{#- The UTC instant of a naive local timestamp in var business_timezone. -#}
{% macro business_local_to_utc(local_ts_sql) -%}
    {{ return(adapter.dispatch('business_local_to_utc', 'crm_warehouse')(local_ts_sql)) }}
{%- endmacro %}

{% macro default__business_local_to_utc(local_ts_sql) -%}
    timezone('UTC', timezone('{{ var("business_timezone") }}', {{ local_ts_sql }}))
{%- endmacro %}

{% macro spark__business_local_to_utc(local_ts_sql) -%}
    to_utc_timestamp({{ local_ts_sql }}, '{{ var("business_timezone") }}')
{%- endmacro %}
