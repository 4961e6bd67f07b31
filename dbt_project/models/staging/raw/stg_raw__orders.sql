{{
    config(
        materialized=crm_incremental_materialization(),
        unique_key='order_line_id',
    )
}}

-- Incremental on DuckDB: only the raw rows new to this build are normalised, then merged
-- with the rows already staged under their keys (macros/incremental_staging.sql).
{%- set plan = staging_plan() %}

with

source as (
    {{ staging_source(plan, source('raw', 'orders'), 'ordered_at') }}
),

renamed as (
    select
        -- keys
        coalesce({{ clean_text('source_system') }}, _source_name) || ':' || {{ clean_text('order_id') }} as order_id,
        coalesce({{ clean_text('source_system') }}, _source_name) as source_system,
        {{ clean_text('order_id') }} as source_order_id,
        coalesce(line_no, 1) as line_no,
        {{ clean_text('customer_ref') }} as customer_ref,

        -- order
        {{ normalize_code_in('status', order_statuses()) }} as status,
        coalesce({{ normalize_code('status') }} = 'cancelled', false) as is_cancelled,
        {{ normalize_code('channel') }} as channel,

        -- buyer as typed on the order (identity resolution input)
        {{ clean_text('buyer_name') }} as buyer_name,
        {{ normalize_phone('buyer_phone') }} as buyer_phone,
        {{ normalize_email('buyer_email') }} as buyer_email,

        -- product
        {{ clean_text('product_id') }} as product_id,
        {{ clean_text('product_name') }} as product_name,
        {{ normalize_code('category') }} as product_category,

        -- amounts in the order currency
        quantity,
        unit_price,
        coalesce(discount_amount, 0) as discount_amount,
        coalesce(refunded_amount, 0) as refunded_amount,
        coalesce(upper({{ clean_text('currency') }}), '{{ var("reporting_currency") }}') as currency,

        -- timestamps
        ordered_at,
        {{ to_business_date('ordered_at') }} as order_date,

        -- lineage
        _source_name as source_name,
        _source_file as source_file,
        _source_line as source_line,
        _delivery_date as delivery_date,
        _loaded_at as loaded_at
    from source
),

new_rows as (
    select
        order_id || ':' || cast(line_no as string) as order_line_id,
        *
    from renamed
),

candidates as (
    {{ staging_candidates(plan, 'new_rows', 'order_line_id') }}
),

deduplicated as (
    -- One row per order line: exact duplicates collapse, and a line delivered again
    -- (e.g. with a new status or refund) replaces the earlier delivery.
    select *
    from candidates
    qualify
        row_number() over (
            partition by order_id, line_no
            order by delivery_date desc, loaded_at desc, source_file desc, source_line desc
        ) = 1
)

select * from deduplicated
