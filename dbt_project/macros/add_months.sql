{#- A date plus a whole number of months (`months`, a literal; negative goes back). The
    first of a month stays the first of a month on both engines. -#}
{% macro add_months(date_sql, months) -%}
    {{ return(adapter.dispatch('add_months', 'crm_warehouse')(date_sql, months)) }}
{%- endmacro %}

{% macro default__add_months(date_sql, months) -%}
    cast({{ date_sql }} + to_months(cast({{ months }} as integer)) as date)
{%- endmacro %}

{% macro spark__add_months(date_sql, months) -%}
    add_months({{ date_sql }}, cast({{ months }} as int))
{%- endmacro %}
