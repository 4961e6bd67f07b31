{#- Aggregates of the business-hours clock over a ticket's pieces (int_service_tickets_sla_clocked:
    the intervals its clock runs inside the working windows, `piece_from`, `piece_minutes`,
    and `minutes_through`, the running total of minutes up to the end of the piece). -#}

{#- Working minutes the clock has run before `instant` (a UTC timestamp). -#}
{% macro working_minutes_until(pieces, instant) -%}
    sum(case
        when {{ pieces }}.piece_from < {{ instant }}
            then least({{ pieces }}.piece_minutes, {{ minutes_between(pieces ~ '.piece_from', instant) }})
        else 0
    end)
{%- endmacro %}

{#- The instant from which the clock exceeds `target` working minutes: in the first piece
    whose running total exceeds the target, the minutes the target still had at its start
    after its start (its very start when the target ran out exactly at the end of the
    previous piece). NULL when the pieces never reach the target. -#}
{% macro business_due_at(pieces, target) -%}
    min(case
        when {{ pieces }}.minutes_through > {{ target }}
            then {{ add_exact_minutes(
                pieces ~ '.piece_from',
                target ~ ' - (' ~ pieces ~ '.minutes_through - ' ~ pieces ~ '.piece_minutes)'
            ) }}
    end)
{%- endmacro %}
