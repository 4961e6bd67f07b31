{#- First business date a nightly (incremental) run recomputes:
        least(D, last D this model was built as of + 1) - late_arrival_lookback_days - extra_days.
    Rows dated before it are left as they are until a --full-refresh (docs/warehouse.md,
    "Late arrivals"). Taking the last build date into account means a gap between runs
    (a backfill of 20 deliveries, a week without runs) is recomputed whole, never skipped. -#}
{% macro incremental_cutoff_date(extra_days=0, model_name=none) -%}
    {%- set last_built -%}
        {{ last_built_as_of(model_name or this.identifier) }}
    {%- endset -%}
    {%- set window_end -%}
        least({{ as_of_date() }}, coalesce({{ add_days(last_built, 1) }}, {{ as_of_date() }}))
    {%- endset -%}
    {{ add_days(window_end, -(var('late_arrival_lookback_days') + extra_days)) }}
{%- endmacro %}

{#- The first month that a KPI building block incremental by month (int_customer_months,
    int_kpi_social_monthly) recomputes: the month of the earlier of its own cutoff and that
    of fct_kpi_monthly, its reader, which may have been built longer ago. -#}
{% macro recomputed_months_from() -%}
    {{ month_start('least(' ~ incremental_cutoff_date() ~ ', ' ~ incremental_cutoff_date(model_name='fct_kpi_monthly') ~ ')') }}
{%- endmacro %}

{#- The last D the model was built as of (NULL: no build recorded). -#}
{% macro last_built_as_of(model_name) -%}
    (select max(as_of_date) from {{ build_log_relation() }} where model = '{{ model_name }}')
{%- endmacro %}

{#- The table where every mart records the D it was built as of (post-hook, see
    dbt_project.yml); incremental_cutoff_date reads it. -#}
{% macro build_log_relation() -%}
    {{ target.schema }}.crm_build_log
{%- endmacro %}

{% macro create_build_log() -%}
    {{ return(adapter.dispatch('create_build_log', 'crm_warehouse')()) }}
{%- endmacro %}

{% macro spark__create_build_log() -%}
    {%- if execute -%}
        {%- do run_query('create schema if not exists ' ~ target.schema) -%}
        {%- do run_query(
            'create table if not exists ' ~ build_log_relation()
            ~ ' (model string, as_of_date date, built_at timestamp) using parquet'
        ) -%}
    {%- endif -%}
{%- endmacro %}

{% macro default__create_build_log() -%}
    {%- if execute -%}
        create table if not exists {{ build_log_relation() }} (
            model string,
            as_of_date date,
            built_at timestamp
        );
    {%- endif -%}
{%- endmacro %}

{% macro record_build() -%}
    insert into {{ build_log_relation() }}
    values ('{{ this.identifier }}', {{ as_of_date() }}, cast(current_timestamp as timestamp))
{%- endmacro %}

{#- The last time the model was built (NULL: no build recorded). -#}
{% macro last_built_at(model_name) -%}
    (select max(built_at) from {{ build_log_relation() }} where model = '{{ model_name }}')
{%- endmacro %}

{#- Keys (record_key of int_source_records_logged, e.g. order_id, ticket_id, the clear
    social_account_key) of the `entity`'s records whose customer changed since {{ this }}
    was last built (a new record linked two customers, a split): their rows are recomputed
    whatever their date, so that facts never point at a customer_id that no longer
    exists. A new record is not a change (its rows are new rows of the window). Proportional
    to the changes: the log records when each record's customer last changed. -#}
{% macro keys_with_changed_customer(entity) -%}
    select customer_changes.record_key
    from {{ ref('int_source_records_logged') }} as customer_changes
    where
        customer_changes.entity = '{{ entity }}'
        and customer_changes.changed_at > customer_changes.first_logged_at
        and customer_changes.changed_at > coalesce({{ last_built_at(this.identifier) }}, cast('1900-01-01' as timestamp))
{%- endmacro %}
