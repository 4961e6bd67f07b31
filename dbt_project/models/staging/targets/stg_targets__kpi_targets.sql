-- The managers' SMART targets (source targets.kpi_targets, validated by the pipeline
-- before it loads them), typed: one row per target.

with

source as (
    select * from {{ source('targets', 'kpi_targets') }}
),

renamed as (
    select
        cast(target_id as string) as target_id,
        cast(kpi as string) as kpi,
        cast(segment as string) as segment,
        cast(baseline_period as string) as baseline_period,
        cast(target_value as string) as target_value,
        cast(direction as string) as direction,
        cast(start_date as date) as start_date,
        cast(due_date as date) as due_date,
        cast(owner as string) as owner,
        cast(description_en as string) as description_en,
        cast(description_zh as string) as description_zh
    from source
)

select * from renamed
