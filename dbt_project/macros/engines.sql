{#- What differs between the engines the project builds on (DuckDB, the default; Apache
    Spark through dbt-spark). Models never test target.type themselves: they call these
    macros, and small SQL differences sit behind adapter.dispatch in the other macro files
    (spark__ versions next to the default ones). docs/spark.md. -#}

{#- Spark has one catalog: the restricted store's `database='restricted'` (a second DuckDB
    file) becomes plain schemas there (`identity`, `golden`); protect them with the
    cluster's table permissions. -#}
{% macro generate_database_name(custom_database_name=none, node=none) -%}
    {%- if target.type == 'spark' -%}
        {{ return(none) }}
    {%- elif custom_database_name is none -%}
        {{ target.database }}
    {%- else -%}
        {{ custom_database_name | trim }}
    {%- endif -%}
{%- endmacro %}

{#- The facts and KPI months are incremental on DuckDB: delete+insert of the late-arrival
    window by a key that is not unique in the model (all lines of an order, all rows of a
    month). Spark has no delete+insert (merge needs a unique key, insert_overwrite needs
    partitions), so on Spark they are tables, rebuilt whole on every build. -#}
{% macro crm_incremental_materialization() -%}
    {{ return('table' if target.type == 'spark' else 'incremental') }}
{%- endmacro %}

{#- on-run-start: on Spark, the sources are tables over the Parquet folders that
    `crm spark export` writes (raw tables by delivery date, the CLV scores; `crm spark
    build` checks that they exist) and the SMART targets (`crm spark build` writes them
    from the targets file), and the pseudonymisation key must be configured. Nothing to do on DuckDB, where the pipeline
    writes the sources itself. -#}
{% macro register_external_sources() -%}
    {{ return(adapter.dispatch('register_external_sources', 'crm_warehouse')()) }}
{%- endmacro %}

{% macro default__register_external_sources() -%}
{%- endmacro %}

{% macro spark__register_external_sources() -%}
    {%- if execute -%}
        {%- set pads = run_query("select '${env:DBT_ENV_SECRET_CRM_PSEUDONYM_IPAD}', '${env:DBT_ENV_SECRET_CRM_PSEUDONYM_OPAD}'").rows[0] -%}
        {%- if not (modules.re.match('^[0-9a-f]{128}$', pads[0]) and modules.re.match('^[0-9a-f]{128}$', pads[1])) -%}
            {{ exceptions.raise_compiler_error(
                "no pseudonymisation key for Spark: run the build with `crm spark build`, which "
                ~ "sets DBT_ENV_SECRET_CRM_PSEUDONYM_IPAD / _OPAD from the project's key (docs/spark.md)"
            ) }}
        {%- endif -%}
        {%- set root = env_var('CRM_SPARK_SOURCES_DIR', '../data/spark/sources') -%}
        {%- for schema, tables in {'raw': ['customers', 'orders', 'service_events', 'social_interactions'], 'clv': ['customer_scores'], 'targets': ['kpi_targets'], 'calendar': ['business_days']}.items() -%}
            {%- do run_query('create schema if not exists ' ~ schema) -%}
            {%- for table in tables -%}
                {%- set location = root ~ '/' ~ schema ~ '/' ~ table -%}
                {%- do run_query('drop table if exists ' ~ schema ~ '.' ~ table) -%}
                {#- mergeSchema: files written before a mapping added a column lack it -#}
                {%- do run_query(
                    'create table ' ~ schema ~ '.' ~ table ~ " using parquet options (mergeSchema 'true') location '"
                    ~ location ~ "'"
                ) -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
