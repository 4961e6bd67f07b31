-- Service KPIs per month, for all tickets (segment_type `all`) and per ticket channel,
-- category and priority (segment_types `channel`, `category`, `priority`: the ticket's
-- own attributes, the SLA priority for `priority`; a ticket without a channel or category
-- is in no row of that segment type) (metrics.md). Tickets are counted in the month of
-- their creation; CSAT per answered survey (every `csat` event with a score) in the month
-- it was answered. demand_conversion_rate counts inquiry tickets of a resolved customer (an
-- unknown requester cannot be followed to an order).
--
-- Maturity (metrics.md "Maturity"): an event whose outcome window is still open at the end
-- of D is pending, whatever happened inside the window so far: counted neither in the
-- numerator nor in the denominator, and published in `pending`. Only events whose window
-- has closed are decided (counting early successes while the failures still wait would
-- bias the provisional value upward).
--   first_response_sla_rate, resolution_sla_rate: tickets whose first-response /
--     resolution target (sla_targets, by priority) has not run out at the end of D, met
--     or not (is_sla_window_open);
--   first_response_business_sla_rate, resolution_business_sla_rate: the same on the
--     business-hours clock: tickets whose target's working minutes are not used up at the
--     end of D (*_business_due_at; NULL without a business calendar: pending). Once the
--     month is complete (end of M + the KPI's maturity_days <= D), a ticket whose target
--     has still not run out (long waits on the customer) is left out: neither decided
--     nor pending;
--   first_response_minutes_p50 / _p90: over the answered tickets whose first-response
--     target has run out; pending: the first-response pending tickets;
--   demand_conversion_rate: inquiries whose var demand_conversion_days window ends
--     after the end of D, converted or not.
-- The other KPIs have no maturity (pending NULL).

{%- set first_response_open = is_sla_window_open('created_at', 'first_response_target_minutes') %}
{%- set resolution_open = is_sla_window_open('created_at', 'resolution_target_minutes') %}
{%- set end_of_d = business_day_end_utc(as_of_date()) %}
{%- set first_response_business_running =
    '(first_response_business_due_at is null or first_response_business_due_at >= ' ~ end_of_d ~ ')' %}
{%- set resolution_business_running =
    '(resolution_business_due_at is null or resolution_business_due_at >= ' ~ end_of_d ~ ')' %}
{%- set first_response_business_open = '(' ~ first_response_business_running ~ ' and not first_response_business_complete)' %}
{%- set resolution_business_open = '(' ~ resolution_business_running ~ ' and not resolution_business_complete)' %}
{%- set conversion_open = is_window_open('created_at', var('demand_conversion_days') * 1440) %}

with

service_tickets as (
    select * from {{ ref('fct_service_tickets') }}
),

service_events as (
    select * from {{ ref('stg_raw__service_events') }}
),

kpi_definitions as (
    select * from {{ ref('kpi_definitions') }}
),

business_maturity as (
    select
        max(case when kpi = 'first_response_business_sla_rate' then maturity_days end) as first_response_days,
        max(case when kpi = 'resolution_business_sla_rate' then maturity_days end) as resolution_days
    from kpi_definitions
),

tickets_matured as (
    select
        service_tickets.*,
        {{ add_days(month_end('service_tickets.created_date'), 'coalesce(business_maturity.first_response_days, 0)') }}
        <= {{ as_of_date() }} as first_response_business_complete,
        {{ add_days(month_end('service_tickets.created_date'), 'coalesce(business_maturity.resolution_days, 0)') }}
        <= {{ as_of_date() }} as resolution_business_complete
    from service_tickets
    cross join business_maturity
),

{#- (segment_type, the fct_service_tickets column naming the segment) -#}
{%- set segmentations = [('all', "'all'"), ('channel', 'channel'), ('category', 'category'), ('priority', 'sla_priority')] %}

segmented_tickets as (
    {%- for segment_type, column in segmentations %}
    select
        '{{ segment_type }}' as segment_type,
        {{ column }} as segment,
        tickets_matured.*
    from tickets_matured
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
        count(*) as tickets,
        {{ percentile_cont('case when not ' ~ first_response_open ~ ' then first_response_minutes end', 0.5) }}
            as first_response_minutes_p50,
        {{ percentile_cont('case when not ' ~ first_response_open ~ ' then first_response_minutes end', 0.9) }}
            as first_response_minutes_p90,
        count(case when not {{ first_response_open }} then first_response_minutes end) as answered_tickets,
        count(case when first_response_sla_status = 'met' and not {{ first_response_open }} then 1 end)
            as first_response_met,
        count(case when not {{ first_response_open }} then 1 end) as first_response_decided,
        count(case when resolution_sla_status = 'met' and not {{ resolution_open }} then 1 end) as resolution_met,
        count(case when not {{ resolution_open }} then 1 end) as resolution_decided,
        count(case when first_response_business_sla_status = 'met' and not {{ first_response_business_running }} then 1 end)
            as first_response_business_met,
        count(case when not {{ first_response_business_running }} then 1 end) as first_response_business_decided,
        count(case when {{ first_response_business_open }} then 1 end) as first_response_business_pending,
        count(case when resolution_business_sla_status = 'met' and not {{ resolution_business_running }} then 1 end)
            as resolution_business_met,
        count(case when not {{ resolution_business_running }} then 1 end) as resolution_business_decided,
        count(case when {{ resolution_business_open }} then 1 end) as resolution_business_pending,
        count(case when reopen_count > 0 then 1 end) as reopened_tickets,
        count(case when {{ first_response_open }} then 1 end) as first_response_pending,
        count(case when {{ resolution_open }} then 1 end) as resolution_pending,
        count(case when is_converted_30d and not {{ conversion_open }} then 1 end) as converted_inquiries,
        count(case when is_converted_30d is not null and not {{ conversion_open }} then 1 end) as decided_inquiries,
        count(case when is_converted_30d is not null and {{ conversion_open }} then 1 end) as pending_inquiries
    from segmented_tickets
    group by {{ month_start('created_date') }}, segment_type, segment
),

surveys as (
    -- every answered survey, in the segments of its ticket (segment all also for a survey
    -- whose ticket is unknown to the fact)
    select
        {{ month_start('service_events.event_date') }} as month,
        coalesce(segmented_tickets.segment_type, 'all') as segment_type,
        coalesce(segmented_tickets.segment, 'all') as segment,
        count(*) as surveys,
        sum(service_events.csat_score) as csat_total,
        count(case when service_events.csat_score >= {{ var('csat_satisfied_score') }} then 1 end) as satisfied_surveys
    from service_events
    left join segmented_tickets
        on service_events.ticket_id = segmented_tickets.ticket_id
    where service_events.event_type = 'csat' and service_events.csat_score is not null
    group by
        {{ month_start('service_events.event_date') }},
        coalesce(segmented_tickets.segment_type, 'all'),
        coalesce(segmented_tickets.segment, 'all')
),

{#- (kpi, numerator, denominator, value: none = the ratio numerator / denominator,
    pending, the CTE it comes from); a rate's value is the ratio of its counts -#}
{%- set unpivot = [
    ('tickets', 'tickets', 'null', 'tickets', 'null', 'created'),
    ('first_response_minutes_p50', 'null', 'answered_tickets', 'first_response_minutes_p50', 'first_response_pending', 'created'),
    ('first_response_minutes_p90', 'null', 'answered_tickets', 'first_response_minutes_p90', 'first_response_pending', 'created'),
    ('first_response_sla_rate', 'first_response_met', 'first_response_decided', none, 'first_response_pending', 'created'),
    ('resolution_sla_rate', 'resolution_met', 'resolution_decided', none, 'resolution_pending', 'created'),
    ('first_response_business_sla_rate', 'first_response_business_met', 'first_response_business_decided', none,
        'first_response_business_pending', 'created'),
    ('resolution_business_sla_rate', 'resolution_business_met', 'resolution_business_decided', none,
        'resolution_business_pending', 'created'),
    ('reopen_rate', 'reopened_tickets', 'tickets', none, 'null', 'created'),
    ('demand_conversion_rate', 'converted_inquiries', 'decided_inquiries', none, 'pending_inquiries', 'created'),
    ('csat_avg', 'csat_total', 'surveys', none, 'null', 'surveys'),
    ('csat_satisfied_rate', 'satisfied_surveys', 'surveys', none, 'null', 'surveys'),
] %}

unpivoted as (
    {%- for kpi, numerator, denominator, value, pending, source in unpivot %}
    select
        month,
        segment_type,
        segment,
        '{{ kpi }}' as kpi,
        {{ numerator }} as numerator,
        {{ denominator }} as denominator,
        {{ value if value else safe_ratio(numerator, denominator) }} as value,
        {{ pending }} as pending
    from {{ source }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
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
    -- an inquiry is a category: its conversion has no other category's row
    where not (segment_type = 'category' and kpi = 'demand_conversion_rate' and segment != 'inquiry')
)

select * from final
