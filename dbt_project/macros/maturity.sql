{#- Maturity (metrics.md "Maturity", docs/warehouse.md "Maturity and pending events"): the
    outcome window of an event at `event_at_sql` (UTC timestamp) lasting `window_minutes`
    is still open at the end of D. An event whose window is open is pending, whatever
    happened inside it so far: only events whose window has closed are decided (counting
    early successes while the failures still wait would bias a provisional rate upward). -#}
{% macro is_window_open(event_at_sql, window_minutes) -%}
    ({{ add_minutes(event_at_sql, window_minutes) }} > {{ business_day_end_utc(as_of_date()) }})
{%- endmacro %}

{#- The SLA target window of a ticket created at `created_at_sql` with target
    `target_minutes_sql` is still open at the end of D: the same bound as the running
    clock of int_service_tickets_sla_clocked (a clock is breached only once it is past
    target), so a ticket is pending exactly while its target has not run out, met or not. -#}
{% macro is_sla_window_open(created_at_sql, target_minutes_sql) -%}
    ({{ add_minutes(created_at_sql, target_minutes_sql) }} >= {{ business_day_end_utc(as_of_date()) }})
{%- endmacro %}

{#- The largest maturity_days of the seed kpi_definitions: months (and weeks) ending this
    many days before the incremental cutoff may still change with time alone, so a
    model incremental by month recomputes them (recomputed_months_from). A model using it
    declares `-- depends_on: ref('kpi_definitions')`. -#}
{% macro max_maturity_days() -%}
    (select coalesce(max(maturity_definitions.maturity_days), 0) from {{ ref('kpi_definitions') }} as maturity_definitions)
{%- endmacro %}
