{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='month',
        on_schema_change='append_new_columns',
    )
}}

-- depends_on: {{ ref('stg_raw__orders') }}, {{ ref('stg_raw__service_events') }},
-- {{ ref('stg_raw__social_interactions') }}, {{ ref('stg_raw__customers') }},
-- {{ ref('int_source_records_logged') }} (read by recomputed_months_from in incremental runs)

-- Segment movement month over month (docs/warehouse.md, "Segment history"): for each month
-- M of fct_customer_segments_monthly and each segment type (lifecycle_stage, rfm_segment,
-- quadrant, vip), the customers by their segment as of end(M - 1) (from_segment) and as of
-- end(M) (to_segment). A customer without a row in M - 1 (first order in M, or M is the
-- first stored month) comes from `none`; one without a row in M (moved to another customer
-- by an identity merge) goes to `none`. A NULL segment is `unsegmented` (an RF score pair
-- the seed maps to no segment) or, for the quadrant, `unknown` (a month no build as of its
-- last day computed). vip: `vip` / `not_vip`.
-- Incremental by month like fct_customer_segments_monthly, its only input: a night
-- recomputes the months from recomputed_months_from() (the months its input recomputed,
-- or earlier when this model was built less often) and reads the month before them; every
-- month when no build of this model is recorded.

with

{% if is_incremental() -%}
computed_from as (
    -- the first month this build recomputes (NULL: every month)
    select
        case
            when {{ last_built_as_of('fct_segment_transitions') }} is not null
                then {{ recomputed_months_from() }}
        end as month
),
{%- endif %}

history as (
    -- in an incremental build, the computed months and the month before them
    select history.*
    from {{ ref('fct_customer_segments_monthly') }} as history
    {% if is_incremental() -%}
    cross join computed_from
    where
        computed_from.month is null
        or history.month >= {{ add_months('computed_from.month', -1) }}
    {%- endif %}
),

stored_months as (
    select distinct history.month
    from history
    {% if is_incremental() -%}
    cross join computed_from
    where computed_from.month is null or history.month >= computed_from.month
    {%- endif %}
),

memberships as (
    {%- set segment_types = [
        ('lifecycle_stage', 'lifecycle_stage'),
        ('rfm_segment', "coalesce(rfm_segment, 'unsegmented')"),
        ('quadrant', "coalesce(quadrant, 'unknown')"),
        ('vip', "case when is_vip then 'vip' else 'not_vip' end"),
    ] %}
    {%- for segment_type, expression in segment_types %}
    select
        customer_id,
        month,
        '{{ segment_type }}' as segment_type,
        {{ expression }} as segment
    from history
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

current_memberships as (
    -- each customer's segment in M, and its segment in M - 1 when it had a row then
    select
        memberships.month,
        memberships.segment_type,
        memberships.customer_id,
        coalesce(previous.segment, 'none') as from_segment,
        memberships.segment as to_segment
    from memberships
    left join memberships as previous
        on memberships.customer_id = previous.customer_id
            and memberships.segment_type = previous.segment_type
            and previous.month = {{ add_months('memberships.month', -1) }}
    {% if is_incremental() -%}
    where memberships.month in (select stored_months.month from stored_months)
    {%- endif %}
),

departed as (
    -- customers with a row in M - 1 and none in M (M stored)
    select
        {{ add_months('previous.month', 1) }} as month,
        previous.segment_type,
        previous.customer_id,
        previous.segment as from_segment,
        'none' as to_segment
    from memberships as previous
    inner join stored_months
        on {{ add_months('previous.month', 1) }} = stored_months.month
    left join memberships
        on previous.customer_id = memberships.customer_id
            and previous.segment_type = memberships.segment_type
            and stored_months.month = memberships.month
    where memberships.customer_id is null
),

moves as (
    select * from current_memberships
    union all
    select * from departed
),

counted as (
    select
        month,
        segment_type,
        from_segment,
        to_segment,
        count(*) as customers
    from moves
    group by month, segment_type, from_segment, to_segment
),

final as (
    select
        {{ month_label('month') }} || '|' || segment_type || '|' || from_segment || '|' || to_segment
            as transition_id,
        month,
        {{ month_label('month') }} as month_label,
        {{ add_months('month', -1) }} as from_month,
        segment_type,
        from_segment,
        to_segment,
        from_segment = to_segment as is_unchanged,
        cast(customers as integer) as customers,
        {{ safe_ratio('customers', 'sum(customers) over (partition by month, segment_type, from_segment)') }}
            as share_of_from
    from counted
)

select * from final
