{#- First business date a nightly (incremental) run recomputes:
        least(D, last D this model was built as of + 1) - late_arrival_lookback_days - extra_days.
    Older rows are recomputed when a row they depend on was delivered since the model's
    last build (delivered_since_build, restated_from) or their customer changed
    (keys_with_changed_customer); docs/warehouse.md, "As-of rules and late arrivals".
    Taking the last build date into account means a gap between runs (a backfill of 20
    deliveries, a week without runs) is recomputed whole, never skipped. -#}
{% macro incremental_cutoff_date(extra_days=0, model_name=none) -%}
    {%- set last_built -%}
        {{ last_built_as_of(model_name or this.identifier) }}
    {%- endset -%}
    {%- set window_end -%}
        least({{ as_of_date() }}, coalesce({{ add_days(last_built, 1) }}, {{ as_of_date() }}))
    {%- endset -%}
    {{ add_days(window_end, -(var('late_arrival_lookback_days') + extra_days)) }}
{%- endmacro %}

{#- The first month that a model incremental by month (fct_kpi_monthly, and its building
    blocks int_customer_months and int_kpi_social_monthly) recomputes: the month of the
    earliest of its cutoff and the first date touched by rows delivered or re-assigned to
    a customer since its last build (`restated_from`, any date); for a building block, also
    those of fct_kpi_monthly, its reader, which may have been built longer ago.
    `maturity=true` (models holding KPIs with maturity_days): the cutoffs move back by the
    largest maturity_days (macro max_maturity_days), so that a month whose KPIs were still
    maturing at the last build is recomputed every night until it is complete. -#}
{% macro recomputed_months_from(model_name=none, maturity=false) -%}
    {%- set own = model_name or this.identifier -%}
    {%- set dates = [incremental_cutoff_date(model_name=own), restated_from(own)] -%}
    {%- if own != 'fct_kpi_monthly' -%}
        {%- do dates.extend([incremental_cutoff_date(model_name='fct_kpi_monthly'), restated_from('fct_kpi_monthly')]) -%}
    {%- endif -%}
    {%- if maturity -%}
        {%- do dates.append(add_days(incremental_cutoff_date(model_name=own), '-' ~ max_maturity_days())) -%}
        {%- if own != 'fct_kpi_monthly' -%}
            {%- do dates.append(add_days(incremental_cutoff_date(model_name='fct_kpi_monthly'), '-' ~ max_maturity_days())) -%}
        {%- endif -%}
    {%- endif -%}
    {{ month_start('least(' ~ dates | join(', ') ~ ')') }}
{%- endmacro %}

{#- The D the model was last built as of, or 1900-01-01 when no build is recorded (then every
    staged row counts as delivered since). -#}
{% macro last_built_as_of_or_start(model_name) -%}
    coalesce({{ last_built_as_of(model_name) }}, cast('1900-01-01' as date))
{%- endmacro %}

{#- Late arrivals (docs/warehouse.md, "As-of rules and late arrivals"). The rows of
    `staging_model` (a staging table: one row per key, the latest delivery) delivered on or
    after the last D the model was built as of: a new row, a correction of an old one (a
    refund, a status change, a late ticket event), whatever its date. The facts recompute
    their keys; models incremental by month, the months they touch (`restated_from`).
    The last D's own deliveries count again, so that a delivery added to D after a run
    for D (a re-run of the night) is taken too. A model reading it declares
    `-- depends_on: ref(staging_model)`. -#}
{% macro delivered_since_build(staging_model, model_name=none) -%}
    select * from {{ ref(staging_model) }}
    where delivery_date >= {{ last_built_as_of_or_start(model_name or this.identifier) }}
{%- endmacro %}

{#- The first business date whose KPI month rows delivered (or moved to another customer)
    since the model's last build can change, NULL when none: an order changes the months
    from its date on (customer states, 365-day revenue) and the tickets and pushes of the
    days before it (the longest of the demand-conversion, win-back and campaign-response
    windows, + 1); a ticket event, the months from the ticket's creation (its CSAT month
    comes later); an interaction, its own month and the pushes and messages it answers
    (the same margin); a customer profile row, the months from its update. A record moved
    to another customer (an identity merge or split) counts like a row delivered again:
    the months from its earliest row. -#}
{% macro restated_from(model_name) -%}
    {%- set margin = [var('demand_conversion_days'), var('winback_conversion_days'), var('campaign_response_days')] | max + 1 -%}
    (
        select min(changed_from) from (
            select min({{ add_days('order_date', -margin) }}) as changed_from
            from ({{ delivered_since_build('stg_raw__orders', model_name) }}) as delivered_orders
            union all
            select min({{ add_days('orders.order_date', -margin) }}) as changed_from
            from {{ ref('stg_raw__orders') }} as orders
            where orders.order_id in ({{ keys_with_changed_customer('orders', model_name) }})
            union all
            select min(ticket_events.event_date) as changed_from
            from {{ ref('stg_raw__service_events') }} as ticket_events
            where
                ticket_events.ticket_id in (
                    select delivered_events.ticket_id
                    from ({{ delivered_since_build('stg_raw__service_events', model_name) }}) as delivered_events
                )
                or ticket_events.ticket_id in ({{ keys_with_changed_customer('service_events', model_name) }})
            union all
            select min({{ add_days('occurred_date', -margin) }}) as changed_from
            from ({{ delivered_since_build('stg_raw__social_interactions', model_name) }}) as delivered_interactions
            union all
            select min({{ add_days('interactions.occurred_date', -margin) }}) as changed_from
            from {{ ref('stg_raw__social_interactions') }} as interactions
            where interactions.social_account_key in ({{ keys_with_changed_customer('social_interactions', model_name) }})
            union all
            select min(updated_date) as changed_from
            from ({{ delivered_since_build('stg_raw__customers', model_name) }}) as delivered_profiles
            union all
            select min(profiles.updated_date) as changed_from
            from {{ ref('stg_raw__customers') }} as profiles
            where profiles.customer_key in ({{ keys_with_changed_customer('customers', model_name) }})
        ) as changes
    )
{%- endmacro %}

{#- The builds of the models that read their own last build (and fct_kpi_monthly's, read by
    its building blocks) are recorded by two declared models, one per dbt step of the night
    (models/state): `crm_builds_warehouse` and `crm_builds_customer_marts`. Each is
    incremental (append) and a child of the models it records, so dbt builds it after them
    and after their data tests, and skips it when one of them failed: a build is recorded only
    when it and its tests succeeded. The models read the records by name, not by ref() (the
    record of a model is written after it, for its next build). -#}
{% macro build_record_models() -%}
    {{ return(['crm_builds_warehouse', 'crm_builds_customer_marts']) }}
{%- endmacro %}

{#- The rows of every build record that exists (none before the first build, and on engines
    other than DuckDB, where every model is rebuilt whole). -#}
{% macro build_record_relations() -%}
    {%- set relations = [] -%}
    {%- if execute -%}
        {%- for name in build_record_models() -%}
            {%- set relation = adapter.get_relation(database=target.database, schema=target.schema, identifier=name) -%}
            {%- if relation is not none -%}
                {%- do relations.append(relation) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(relations) }}
{%- endmacro %}

{#- `aggregate` over the recorded builds of `model_name`, or NULL of `type` when none is
    recorded. -#}
{% macro recorded_build(model_name, aggregate, type) -%}
    {%- set relations = build_record_relations() -%}
    {%- if relations | length == 0 -%}
        cast(null as {{ type }})
    {%- else -%}
        (
            select {{ aggregate }}
            from (
                {%- for relation in relations %}
                    select model, as_of_date, built_at, tested_build from {{ relation }}
                    {%- if not loop.last %} union all{% endif %}
                {%- endfor %}
            ) as builds
            where model = '{{ model_name }}'
        )
    {%- endif -%}
{%- endmacro %}

{#- The last D the model was built as of (NULL: no build recorded). -#}
{% macro last_built_as_of(model_name) -%}
    {{ recorded_build(model_name, 'max(as_of_date)', 'date') }}
{%- endmacro %}

{#- The last time the model was built (NULL: no build recorded). -#}
{% macro last_built_at(model_name) -%}
    {{ recorded_build(model_name, 'max(built_at)', 'timestamp') }}
{%- endmacro %}

{#- The last build of the fact's written-keys log whose data tests all passed (NULL: none
    recorded). -#}
{% macro last_tested_build(model_name) -%}
    {{ recorded_build(model_name, 'max(tested_build)', 'bigint') }}
{%- endmacro %}

{#- The SQL of a build record model (models/state): a row per model of `models` selected in
    this invocation (key: dbt's invocation_id and the model), with the run's D, the time of
    the record and, for a fact with a written-keys log, the build its tests checked
    (tested_build). Each model of `models` is a parent of the record (ref), so a failed model or
    test skips the record and the next build recomputes (and tests) from the last recorded
    one. -#}
{% macro build_record_rows(models) -%}
    {%- set recorded = [] -%}
    {%- for name in models -%}
        {%- set relation = ref(name) -%}
        {%- if execute and ('model.' ~ project_name ~ '.' ~ name) in selected_resources -%}
            {%- do recorded.append((name, relation)) -%}
        {%- endif -%}
    {%- endfor -%}
    select
        cast(invocation_id || ':' || model as varchar) as build_id,
        cast(invocation_id as varchar) as invocation_id,
        cast(model as varchar) as model,
        cast(as_of_date as date) as as_of_date,
        cast(built_at as timestamp) as built_at,
        cast(tested_build as bigint) as tested_build
    from (
        select
            null as invocation_id,
            null as model,
            null as as_of_date,
            null as built_at,
            null as tested_build
        {%- for name, relation in recorded %}
            union all
            select
                '{{ invocation_id }}',
                '{{ name }}',
                {{ as_of_date() }},
                cast(current_timestamp as timestamp),
                {{ tested_build(name, relation) }}
        {%- endfor %}
    ) as builds
    where model is not null
{%- endmacro %}

{#- The last build of the written-keys log of `name` when this `dbt build` ran every data
    test of it alone (those that block its children: a failure skips the build record), else
    NULL; NULL too when one of those tests may pass with failing rows (a `warn` severity, an
    `error_if` other than the default `!=0`): a warning does not skip the record, and the
    rows it flagged must stay in the next nights' checks. Tests that also read other models
    (relationships to dim_customers, built by the next step) check every row anyway (macro
    written_rows_filter). The log is looked up in
    the database, not in dbt's relation cache: a first build creates it in a post-hook. -#}
{% macro tested_build(name, relation) -%}
    {%- set log = written_keys_relation(relation) -%}
    {%- set unique_id = 'model.' ~ project_name ~ '.' ~ name -%}
    {%- set tests = [] -%}
    {%- set lenient = [] -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'test' and node.depends_on.nodes | list == [unique_id] -%}
            {%- do tests.append(node.unique_id) -%}
            {%- if (node.config.severity | lower) != 'error' or (node.config.error_if | replace(' ', '')) != '!=0' -%}
                {%- do lenient.append(node.unique_id) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if flags.WHICH == 'build' and tests | length > 0 and lenient | length == 0
        and tests | reject('in', selected_resources) | list | length == 0
        and relation_exists_now(log) -%}
        (select max(build) from {{ log }})
    {%- else -%}
        cast(null as bigint)
    {%- endif -%}
{%- endmacro %}

{#- Keys (record_key of int_source_records_logged, e.g. order_id, ticket_id, the clear
    social_account_key) of the `entity`'s records whose customer changed since {{ this }}
    was last built (a new record linked two customers, a split): their rows are recomputed
    whatever their date, so that facts never point at a customer_id that no longer
    exists. A new record is not a change (its rows are new rows of the window). Proportional
    to the changes: the log records when each record's customer last changed. -#}
{% macro keys_with_changed_customer(entity, model_name=none) -%}
    select customer_changes.record_key
    from {{ ref('int_source_records_logged') }} as customer_changes
    where
        customer_changes.entity = '{{ entity }}'
        and customer_changes.changed_at > customer_changes.first_logged_at
        and customer_changes.changed_at > coalesce({{ last_built_at(model_name or this.identifier) }}, cast('1900-01-01' as timestamp))
{%- endmacro %}
