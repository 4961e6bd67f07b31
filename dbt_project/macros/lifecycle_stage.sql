{#- metrics.md lifecycle_stage as of `as_of` (a date expression), from the first and last
    order dates on or before it (NULL = no order):
      prospect: no order ever
      new:      first_order_date >= as_of - lifecycle_new_days (89)
      active:   last_order_date >= as_of - lifecycle_active_days (179), not new
      dormant:  as_of - lifecycle_dormant_days (364) <= last_order_date < as_of - 179
      churned:  last_order_date < as_of - 364 -#}
{% macro lifecycle_stage(first_order_date, last_order_date, as_of) -%}
    case
        when {{ first_order_date }} is null then 'prospect'
        when {{ first_order_date }} >= {{ add_days(as_of, -var('lifecycle_new_days')) }} then 'new'
        when {{ last_order_date }} >= {{ add_days(as_of, -var('lifecycle_active_days')) }} then 'active'
        when {{ last_order_date }} >= {{ add_days(as_of, -var('lifecycle_dormant_days')) }} then 'dormant'
        else 'churned'
    end
{%- endmacro %}

{#- active_as_of(d): an order dated in [d - lifecycle_active_days, d]; NULL-safe. -#}
{% macro is_active_as_of(last_order_date, as_of) -%}
    coalesce({{ last_order_date }} >= {{ add_days(as_of, -var('lifecycle_active_days')) }}, false)
{%- endmacro %}

{#- dormant as of d: last order in [d - 364, d - 180] (metrics.md dormant_reactivation). -#}
{% macro is_dormant_as_of(last_order_date, as_of) -%}
    coalesce(
        {{ last_order_date }} >= {{ add_days(as_of, -var('lifecycle_dormant_days')) }}
        and {{ last_order_date }} < {{ add_days(as_of, -var('lifecycle_active_days')) }},
        false
    )
{%- endmacro %}
