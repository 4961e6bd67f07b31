{#- Incremental golden record (int_customer_profiles_merged, DuckDB only; on Spark, in unit
    tests and when the model is only compiled it is computed whole).

    A customer's row is computed from the profile versions of the customer's accounts
    (int_customer_profile_versions: the staged profile versions of each account key, with
    the account's customer from int_source_records_resolved). It changes only when an
    account key gets a new staged version or changes customer, and an incremental build of
    int_source_records_resolved computes such keys again: it keeps them in
    `int_source_records_resolved__changed_keys` with the customer before and after
    (macros/source_records.sql). An incremental build here deletes the rows of the
    customers before and after of the changed account keys (pre-hook) and computes them
    again from all their versions; a customer that no longer has an account is left out.
    Every other customer has the same versions as before.

    It does so only when its last build read the build of int_source_records_resolved just
    before the current one (`<model>__last_build`, macros/build_records.sql); otherwise
    (first build, --full-refresh, a whole build of the source records, built more than
    once since, a change of the model, its input view, the macros it calls or the source
    priorities) every customer is computed. The decision and the counts are printed in the dbt log. The work
    table `<model>__gr_customers` is dropped by the post-hook. -#}

{#- The survivorship order of a customer's profile versions: latest first, then the lower
    source priority, then the smaller record key. -#}
{% macro golden_record_survivorship() -%}
    {{ return([('updated_at', 'desc'), ('source_priority', 'asc'), ('record_key', 'asc')]) }}
{%- endmacro %}

{#- What every row depends on besides the profile versions' rows: the SQL of the model and
    of its input view int_customer_profile_versions with the macros they call
    (sql_fingerprint), the survivorship macros as rendered (dispatched per engine), and the
    source priorities as loaded (not the seed file: a seed edited but not loaded yet changes
    nothing). -#}
{% macro golden_record_fingerprint() -%}
    {%- set versions = graph.nodes.get('model.' ~ project_name ~ '.int_customer_profile_versions') -%}
    {%- set survivorship = golden_record_survivorship() -%}
    {%- set rendered = first_known('x', survivorship, rank='r') ~ first_known('x', survivorship) ~ sort_keys_sql(survivorship) -%}
    {%- set priorities = run_query(
        "select coalesce(string_agg(source_system || '=' || priority, ',' order by source_system), '') from "
        ~ ref('source_priority')
    ).rows[0][0] -%}
    {{ return(local_md5(
        sql_fingerprint() ~ '|' ~ (sql_fingerprint(versions) if versions else '') ~ '|' ~ rendered
        ~ '|' ~ priorities
    )) }}
{%- endmacro %}

{#- On an incremental build, the work table of the customer_id computed again; none on a
    whole build. -#}
{% macro golden_record_plan() -%}
    {%- if not identity_identifiers_materialized() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set work = work_prefix('__gr_') -%}
    {{ drop_work_tables('__gr_', ['customers']) }}
    {%- set own = own_build_decision(golden_record_fingerprint()) -%}
    {%- set change = own.reason if own.reason is not none else upstream_change(
        'int_source_records_resolved', own.kept.read.get('int_source_records_resolved'), ['changed_keys']
    ) -%}
    {%- if change not in ['changes', 'unchanged'] -%}
        {#- the pre-hook deletes every row of an existing table -#}
        {{ log("golden record: every customer computed (" ~ change ~ ")", info=true) }}
        {{ return(none) }}
    {%- endif -%}
    {%- set customers_sql -%}
        create table {{ work }}customers as
        {%- if change == 'changes' %}
        with changed as (
            select changed.old_customer_id, changed.customer_id
            from {{ side_table('changed_keys', ref('int_source_records_resolved')) }} as changed
            where changed.entity = 'customers'
        )
        select changed.old_customer_id as customer_id from changed where changed.old_customer_id is not null
        union
        select changed.customer_id from changed where changed.customer_id is not null
        {%- else %}
        select cast(null as varchar) as customer_id where false
        {%- endif %}
    {%- endset -%}
    {%- do run_query(customers_sql) -%}
    {%- set counts = run_query('select (select count(*) from ' ~ work ~ 'customers), (select count(*) from ' ~ this ~ ')').rows[0] -%}
    {{ log("golden record: recomputing " ~ counts[0] ~ " customers of " ~ counts[1], info=true) }}
    {{ return(work ~ 'customers') }}
{%- endmacro %}

{#- pre-hook: delete the rows this build computes again (all of them on a whole build of the
    existing table). -#}
{% macro golden_record_prepare() -%}
    {{ delete_recomputed_rows('__gr_', 'customers', 'customer_id', 'scoped.customer_id', identity_identifiers_materialized()) }}
{%- endmacro %}

{#- post-hook: record the build and the source records build it read (none when it was not
    computed for real: the next build is whole), drop the work table. -#}
{% macro golden_record_finish() -%}
    {%- if execute and target.type != 'spark' and model.resource_type != 'unit_test' -%}
        {{ keep_build_record(
            false, golden_record_fingerprint(), ['int_source_records_resolved'], identity_identifiers_materialized()
        ) }}
        {{ drop_work_tables('__gr_', ['customers']) }}
    {%- endif -%}
{%- endmacro %}
