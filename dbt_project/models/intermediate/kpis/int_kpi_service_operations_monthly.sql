-- Service-operations KPIs per month (docs/warehouse.md "Service operations KPIs"): NPS,
-- complaints, one-touch resolution and time to first assignment, for all tickets and per
-- ticket channel, category and priority (as int_kpi_service_monthly; the complaint KPIs
-- have no category rows, complaint_rate_per_1000_orders only segment all).
--   nps: over the tickets whose latest NPS answer (0-10) was given in M: 100 x
--     (promoters 9-10 - detractors 0-6) / surveyed tickets; numerator promoters -
--     detractors, denominator surveyed tickets.
--   complaint_rate_per_1000_orders: complaint tickets created in M / orders in M
--     (fct_orders, not cancelled) x 1,000, from the first month with tickets.
--   complaint_resolution_minutes_p50: median calendar minutes to the first resolution of
--     the complaints created in M whose resolution target has run out (maturity, like
--     first_response_minutes_p50); pending: the complaints whose target has not.
--   repeat_complaint_rate: complaints created in M of a resolved customer who had
--     created another complaint in the var repeat_complaint_days (30) days before it,
--     over the complaints of resolved customers created in M.
--   one_touch_resolution_rate: one-touch resolutions / tickets created in M resolved by D.
--   first_assignment_minutes_p50: median minutes from creation to the first assignment
--     over the tickets created in M assigned by D.

{%- set resolution_open = is_sla_window_open('created_at', 'resolution_target_minutes') %}
{%- set segmentations = [('all', "'all'"), ('channel', 'channel'), ('category', 'category'), ('priority', 'sla_priority')] %}

with

service_tickets as (
    select * from {{ ref('fct_service_tickets') }}
),

service_events as (
    select * from {{ ref('stg_raw__service_events') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

complaints as (
    select
        ticket_id,
        customer_id,
        created_at
    from service_tickets
    where category = 'complaint' and customer_id is not null
),

repeat_complaints as (
    -- complaints with another complaint of the same customer in the window before them
    select distinct later.ticket_id
    from complaints as earlier
    inner join complaints as later
        on
            earlier.customer_id = later.customer_id
            and earlier.ticket_id != later.ticket_id
            and (
                earlier.created_at < later.created_at
                or (earlier.created_at = later.created_at and earlier.ticket_id < later.ticket_id)
            )
            and earlier.created_at >= {{ add_minutes('later.created_at', -1440 * var('repeat_complaint_days')) }}
),

repeat_flagged as (
    select
        service_tickets.*,
        case
            when service_tickets.category = 'complaint' and service_tickets.customer_id is not null
                then repeat_complaints.ticket_id is not null
        end as is_repeat_complaint
    from service_tickets
    left join repeat_complaints
        on service_tickets.ticket_id = repeat_complaints.ticket_id
),

segmented_tickets as (
    {%- for segment_type, column in segmentations %}
    select
        '{{ segment_type }}' as segment_type,
        {{ column }} as segment,
        repeat_flagged.*
    from repeat_flagged
    where {{ column }} is not null
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

created as (
    select
        {{ month_start('created_date') }} as month,
        segment_type,
        segment,
        count(case when category = 'complaint' then 1 end) as complaints,
        {{ percentile_cont("case when category = 'complaint' and not " ~ resolution_open ~ " then resolution_minutes end", 0.5) }}
            as complaint_resolution_minutes_p50,
        count(case when category = 'complaint' and not {{ resolution_open }} then resolution_minutes end)
            as complaints_resolved_decided,
        count(case when category = 'complaint' and {{ resolution_open }} then 1 end) as complaints_pending,
        count(case when is_repeat_complaint then 1 end) as repeat_complaints,
        count(is_repeat_complaint) as identified_complaints,
        count(case when is_one_touch_resolution then 1 end) as one_touch_tickets,
        count(first_resolved_at) as resolved_tickets,
        {{ percentile_cont('first_assignment_minutes', 0.5) }} as first_assignment_minutes_p50,
        count(first_assignment_minutes) as assigned_tickets
    from segmented_tickets
    group by {{ month_start('created_date') }}, segment_type, segment
),

nps_answers as (
    -- each ticket's latest NPS answer
    select
        ticket_id,
        event_date,
        nps_score
    from service_events
    where nps_score is not null
    qualify row_number() over (partition by ticket_id order by event_at desc, nps_score asc) = 1
),

surveyed as (
    select
        {{ month_start('nps_answers.event_date') }} as month,
        coalesce(segmented_tickets.segment_type, 'all') as segment_type,
        coalesce(segmented_tickets.segment, 'all') as segment,
        count(*) as surveyed_tickets,
        count(case when nps_answers.nps_score >= 9 then 1 end)
        - count(case when nps_answers.nps_score <= 6 then 1 end) as net_promoters
    from nps_answers
    left join segmented_tickets
        on nps_answers.ticket_id = segmented_tickets.ticket_id
    group by
        {{ month_start('nps_answers.event_date') }},
        coalesce(segmented_tickets.segment_type, 'all'),
        coalesce(segmented_tickets.segment, 'all')
),

monthly_orders as (
    select
        {{ month_start('order_date') }} as month,
        count(*) as orders
    from orders
    where not is_cancelled
    group by {{ month_start('order_date') }}
),

unpivoted as (
    select
        month,
        segment_type,
        segment,
        'nps' as kpi,
        net_promoters as numerator,
        surveyed_tickets as denominator,
        100.0 * {{ safe_ratio('net_promoters', 'surveyed_tickets') }} as value,
        null as pending
    from surveyed
    union all
    select
        monthly_orders.month,
        'all' as segment_type,
        'all' as segment,
        'complaint_rate_per_1000_orders' as kpi,
        coalesce(created.complaints, 0) as numerator,
        monthly_orders.orders as denominator,
        1000.0 * {{ safe_ratio('coalesce(created.complaints, 0)', 'monthly_orders.orders') }} as value,
        null as pending
    from monthly_orders
    left join created
        on
            monthly_orders.month = created.month
            and created.segment_type = 'all'
    -- from the first month with tickets: before the help desk's data, no complaint rate
    where monthly_orders.month >= (select min(first_tickets.month) from created as first_tickets)
    union all
    select
        month,
        segment_type,
        segment,
        'complaint_resolution_minutes_p50' as kpi,
        null as numerator,
        complaints_resolved_decided as denominator,
        complaint_resolution_minutes_p50 as value,
        complaints_pending as pending
    from created
    where segment_type != 'category' and complaints > 0
    union all
    select
        month,
        segment_type,
        segment,
        'repeat_complaint_rate' as kpi,
        repeat_complaints as numerator,
        identified_complaints as denominator,
        {{ safe_ratio('repeat_complaints', 'identified_complaints') }} as value,
        null as pending
    from created
    where segment_type != 'category' and complaints > 0
    union all
    select
        month,
        segment_type,
        segment,
        'one_touch_resolution_rate' as kpi,
        one_touch_tickets as numerator,
        resolved_tickets as denominator,
        {{ safe_ratio('one_touch_tickets', 'resolved_tickets') }} as value,
        null as pending
    from created
    union all
    select
        month,
        segment_type,
        segment,
        'first_assignment_minutes_p50' as kpi,
        null as numerator,
        assigned_tickets as denominator,
        first_assignment_minutes_p50 as value,
        null as pending
    from created
),

final as (
    select
        {{ month_label('month') }} || '|' || segment || '|' || kpi as kpi_row_id,
        month,
        segment_type,
        segment,
        kpi,
        cast(numerator as double) as numerator,
        cast(denominator as double) as denominator,
        cast(value as double) as value,
        cast(pending as double) as pending
    from unpivoted
)

select * from final
