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

{#- The relation a data test reads (dbt's get_where_subquery, which every generic test
    calls on its model): the rows its `where` config keeps, with the token CHECKS_FROM_DATE
    replaced by the run's first delivery date (dbt renders a test's config when it parses
    the project, so a date written there would be the parse's), and, for the tests
    `written_rows_filter` scopes, only the rows of the keys the model's last build wrote. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set conditions = [] -%}
    {%- if where -%}
        {%- do conditions.append(where | replace('CHECKS_FROM_DATE', "cast('" ~ checks_from_date_string() ~ "' as date)")) -%}
    {%- endif -%}
    {%- set written = written_rows_filter(relation) -%}
    {%- if written is not none -%}
        {%- do conditions.append(written) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where ({{ conditions | join(') and (') }})) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}

{#- A night's data tests of a fact built `delete+insert` by its unique_key check the rows
    its builds wrote since the last build whose tests all passed (column tested_build of the
    build records, macros build_record_rows and last_tested_build): the rows of every other
    key were written by a build whose tests checked them. Scoped: `not_null` and
    `accepted_values` (each row judged by itself) and `unique` on the unique_key (the rows of a key are all written together), on a model
    with a written-keys log (macro keep_written_keys). None (every row) when no tested
    build is recorded, when a build since was whole (first build, --full-refresh, the log
    started or pruned), on the ISO weekday var whole_data_tests_weekday of D, on other
    engines, or for any other test (`relationships` and the combinations read other
    rows). -#}
{% macro written_rows_filter(relation) -%}
    {%- if not execute or target.type != 'duckdb' or model.resource_type != 'test' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set test = model.get('test_metadata') or {} -%}
    {%- set column = (test.get('kwargs') or {}).get('column_name') -%}
    {%- if test.get('name') not in ['not_null', 'accepted_values', 'unique'] or not column -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set log = written_keys_relation(relation) -%}
    {%- if adapter.get_relation(log.database, log.schema, log.identifier) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set tested = graph.nodes.get(model.get('attached_node') or '') -%}
    {%- set key = tested.config.get('unique_key') if tested else none -%}
    {%- if key is none or key is not string or (test.get('name') == 'unique' and column != key) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set as_of = modules.datetime.date.fromisoformat(as_of_date_string()) -%}
    {%- if as_of.isoweekday() == var('whole_data_tests_weekday') | int -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set since_sql = last_tested_build(relation.identifier) | trim -%}
    {%- set since = run_query('select ' ~ since_sql).rows[0][0] -%}
    {%- if since is none or run_query(
        'select count(*) from ' ~ log ~ ' where whole and build > ' ~ since
    ).rows[0][0] > 0 -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(key ~ ' in (select ' ~ key ~ ' from ' ~ log ~ ' where build > ' ~ since ~ ')') }}
{%- endmacro %}
