{#- Maturity (metrics.md "Maturity", docs/warehouse.md "Maturity and pending events"): the
    outcome window of an event at `event_at_sql` (UTC timestamp) lasting `window_minutes`
    is still open at the end of D, so an event without its outcome yet is pending. -#}
{% macro is_window_open(event_at_sql, window_minutes) -%}
    ({{ add_minutes(event_at_sql, window_minutes) }} > {{ business_day_end_utc(as_of_date()) }})
{%- endmacro %}

{#- The largest maturity_days of the seed kpi_definitions: months (and weeks) ending this
    many days before the incremental cutoff may still change with time alone, so a
    model incremental by month recomputes them (recomputed_months_from). A model using it
    declares `-- depends_on: ref('kpi_definitions')`. -#}
{% macro max_maturity_days() -%}
    (select coalesce(max(maturity_definitions.maturity_days), 0) from {{ ref('kpi_definitions') }} as maturity_definitions)
{%- endmacro %}
