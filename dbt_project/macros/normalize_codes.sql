{#- Gender: M/F/male/female/男/女 (any case) to male/female; anything else
    (unknown, U, blank) to NULL. -#}
{% macro normalize_gender(column) -%}
    case
        when lower(trim(cast({{ column }} as string))) in ('m', 'male', '男', 'man')
            then 'male'
        when lower(trim(cast({{ column }} as string))) in ('f', 'female', '女', 'woman')
            then 'female'
    end
{%- endmacro %}

{#- Ticket priority: P1-P4 (any case), 1-4, urgent/high/normal/medium/low; else NULL. -#}
{% macro normalize_priority(column) -%}
    case
        when upper(trim(cast({{ column }} as string))) in ('P1', '1', 'URGENT', 'CRITICAL')
            then 'P1'
        when upper(trim(cast({{ column }} as string))) in ('P2', '2', 'HIGH')
            then 'P2'
        when upper(trim(cast({{ column }} as string))) in ('P3', '3', 'NORMAL', 'MEDIUM')
            then 'P3'
        when upper(trim(cast({{ column }} as string))) in ('P4', '4', 'LOW')
            then 'P4'
    end
{%- endmacro %}

{#- Lower-case trimmed code, NULL when blank (status, channel, category, event types). -#}
{% macro normalize_code(column) -%}
    nullif(lower(trim(cast({{ column }} as string))), '')
{%- endmacro %}

{#- The order statuses of the landing contract. -#}
{% macro order_statuses() -%}
    {{ return(['paid', 'shipped', 'completed', 'cancelled', 'refunded']) }}
{%- endmacro %}

{#- normalize_code, then 'unknown' for any code outside `accepted` (and a blank one): a new
    code in a source never stops the night; the quality target check `status_unknown_codes`
    (expectations/fct_orders.json) reports how many rows carry it. -#}
{% macro normalize_code_in(column, accepted) -%}
    case
        when {{ normalize_code(column) }} in ('{{ accepted | join("', '") }}')
            then {{ normalize_code(column) }}
        else 'unknown'
    end
{%- endmacro %}

{#- Trimmed text, NULL when blank. -#}
{% macro clean_text(column) -%}
    nullif(trim(cast({{ column }} as string)), '')
{%- endmacro %}
