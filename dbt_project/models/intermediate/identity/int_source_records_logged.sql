{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='source_record_id',
        on_schema_change='sync_all_columns',
        post_hook=["{{ source_records_logged_finish() }}"],
    )
}}

-- The customer of every source record, when it was first logged and when its customer last
-- changed (customers merged or split by identity resolution). An incremental fact
-- recomputes the rows of the records whose customer changed since its own last build
-- (macro keys_with_changed_customer), whatever their date: facts never point at a
-- customer_id that no longer exists. A new record is not a change: its rows are new rows,
-- within the fact's window or waiting for a --full-refresh like any late row. A build
-- writes only the new and changed records. On a first build (or --full-refresh) every
-- record counts as logged long ago, so incremental facts built before it recompute every
-- row once. Records that left the warehouse (a withdrawn delivery) keep their row until a
-- --full-refresh: no fact has rows for them. An erasure deletes the person's rows (every
-- table with a customer_id) and requests a full refresh.
--
-- On DuckDB a nightly build compares only the source records that the last build of
-- int_source_records_resolved rewrote (macro source_records_logged_scope): every other
-- record has the customer the log compared before.
{%- set scope = source_records_logged_scope() if is_incremental() else none %}

with

resolved as (
    select * from {{ ref('int_source_records_resolved') }}
    {%- if scope is not none %}
    where source_record_id in ({{ scope }})
    {%- endif %}
),

{% if is_incremental() %}
logged as (
    select * from {{ this }}
),
{% endif %}

changed as (
    select
        resolved.source_record_id,
        resolved.entity,
        resolved.record_key,
        resolved.customer_id,
        {% if is_incremental() -%}
        coalesce(logged.first_logged_at, cast(current_timestamp as timestamp))
        {%- else -%}
        cast('1900-01-01' as timestamp)
        {%- endif %} as first_logged_at
    from resolved
    {% if is_incremental() %}
    left join logged
        on resolved.source_record_id = logged.source_record_id
    where
        logged.source_record_id is null
        or logged.customer_id is distinct from resolved.customer_id
    {% endif %}
),

final as (
    select
        cast(source_record_id as string) as source_record_id,
        cast(entity as string) as entity,
        cast(record_key as string) as record_key,
        cast(customer_id as string) as customer_id,
        cast(first_logged_at as timestamp) as first_logged_at,
        cast(current_timestamp as timestamp) as changed_at
    from changed
)

select * from final
