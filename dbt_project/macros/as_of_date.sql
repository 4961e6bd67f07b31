{#- The run's as-of date D (docs/warehouse.md, "As-of rules"): the var `as_of_date`
    ('YYYY-MM-DD'), or yesterday in the business timezone when the var is empty. -#}
{% macro as_of_date_string() -%}
    {%- set configured = var('as_of_date', '') -%}
    {%- if configured is not none and (configured | string | trim) != '' -%}
        {%- set text = configured | string | trim -%}
        {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
            {{ exceptions.raise_compiler_error("var as_of_date=" ~ text ~ " is not a date 'YYYY-MM-DD'") }}
        {%- endif -%}
        {{- text -}}
    {%- else -%}
        {%- set zone = modules.pytz.timezone(var('business_timezone')) -%}
        {%- set today = modules.datetime.datetime.now(zone).date() -%}
        {{- (today - modules.datetime.timedelta(days=1)).isoformat() -}}
    {%- endif -%}
{%- endmacro %}

{% macro as_of_date() -%}
    cast('{{ as_of_date_string() }}' as date)
{%- endmacro %}
