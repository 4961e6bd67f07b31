{#- First business date a nightly (incremental) run recomputes: D - late_arrival_lookback_days
    - extra_days. Rows dated before it are left as they are until a --full-refresh
    (docs/warehouse.md, "Late arrivals"). -#}
{% macro incremental_cutoff_date(extra_days=0) -%}
    {{ add_days(as_of_date(), -(var('late_arrival_lookback_days') + extra_days)) }}
{%- endmacro %}

{#- Keys of rows already in {{ this }} whose customer changed since they were written (a new
    record linked two customers): they are recomputed whatever their date, so that facts
    never point at a customer_id that no longer exists. -#}
{% macro keys_with_changed_customer(key_column, resolved_relation, entity) -%}
    select existing.{{ key_column }}
    from {{ this }} as existing
    inner join {{ resolved_relation }} as resolved_now
        on existing.{{ key_column }} = resolved_now.record_key
        and resolved_now.entity = '{{ entity }}'
    where existing.customer_id is distinct from resolved_now.customer_id
{%- endmacro %}
