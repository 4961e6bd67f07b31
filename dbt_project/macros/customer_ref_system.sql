{#- The source system a service event's customer_ref belongs to, from the name of the
    mapping that loaded the row (`source_name`): var customer_ref_systems (mapping name ->
    system, the mappings' `customer_ref_system`), else var member_system (the deployment's
    member system). An account identifier is `<system>:<customer_ref>`, as a member
    profile's `<source_system>:<customer_ref>` (docs/ingestion.md). -#}
{% macro customer_ref_system(source_name) -%}
    {%- set systems = var('customer_ref_systems') or {} -%}
    {%- if systems | length == 0 -%}
        {{ customer_ref_system_literal(var('member_system')) }}
    {%- else -%}
        case {{ source_name }}
            {%- for name, system in systems | dictsort %}
            when {{ customer_ref_system_literal(name) }} then {{ customer_ref_system_literal(system) }}
            {%- endfor %}
            else {{ customer_ref_system_literal(var('member_system')) }}
        end
    {%- endif -%}
{%- endmacro %}

{#- A string literal (quotes doubled); an empty member system is NULL: no account. -#}
{% macro customer_ref_system_literal(value) -%}
    {%- if value is none or (value | string | trim) == '' -%}
        cast(null as string)
    {%- else -%}
        '{{ value | string | trim | replace("'", "''") }}'
    {%- endif -%}
{%- endmacro %}

{#- What the rows of customer_ref_system depend on: part of the fingerprints of the
    incremental models that use it (a changed mapping recomputes every ticket). -#}
{% macro customer_ref_system_fingerprint() -%}
    {{ return(var('member_system') ~ '|' ~ tojson(var('customer_ref_systems') or {}, sort_keys=true)) }}
{%- endmacro %}
