{#- The run's dates (docs/warehouse.md, "As-of rules").

    Each comes from the var of its name when set (the command line, the Spark build, the dbt
    unit tests' overrides), else from the dbt process's environment, read only while the
    build runs (`execute`), never while dbt parses: the pipeline sets CRM_AS_OF_DATE and
    CRM_CHECKS_FROM_DATE. Vars are part of dbt's saved parse, so a date passed as a var
    made every night parse the whole project again; the environment read at run time
    leaves that parse valid from one night to the next. -#}
{% macro run_date_setting(name, env_name) -%}
    {%- set configured = var(name, '') -%}
    {%- if (configured is none or (configured | string | trim) == '') and execute -%}
        {%- set configured = env_var(env_name, '') -%}
    {%- endif -%}
    {%- set text = (configured if configured is not none else '') | string | trim -%}
    {%- if text != '' and not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
        {{ exceptions.raise_compiler_error(name ~ "=" ~ text ~ " is not a date 'YYYY-MM-DD'") }}
    {%- endif -%}
    {{ return(text) }}
{%- endmacro %}

{#- D, 'YYYY-MM-DD': var or CRM_AS_OF_DATE, else yesterday in the business timezone. -#}
{% macro as_of_date_string() -%}
    {%- set text = run_date_setting('as_of_date', 'CRM_AS_OF_DATE') -%}
    {%- if text != '' -%}
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

{#- The first delivery date the run covers, 'YYYY-MM-DD': var or CRM_CHECKS_FROM_DATE, else
    1900-01-01 (every delivery). -#}
{% macro checks_from_date_string() -%}
    {%- set text = run_date_setting('checks_from_date', 'CRM_CHECKS_FROM_DATE') -%}
    {{- text if text != '' else '1900-01-01' -}}
{%- endmacro %}

{#- The `where` config of a data test, with the token CHECKS_FROM_DATE replaced by the run's
    first delivery date (a date literal). dbt renders a test's config when it parses the
    project, so a date written into `where` there would be the one of the parse: the token
    is replaced here, when the test runs. Otherwise dbt's own get_where_subquery. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set where = where | replace('CHECKS_FROM_DATE', "cast('" ~ checks_from_date_string() ~ "' as date)") -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}
