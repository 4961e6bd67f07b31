-- One row per ticket: its life from the event log, and the SLA clocks as of the end of D
-- (calendar minutes; docs/warehouse.md "SLA clocks").
--   first response: the first agent_reply. A ticket resolved before any agent reply has
--     its first-response clock stopped by the resolution (the customer got an answer);
--     first_response_minutes (the p50/p90 measure) stays the agent-reply time, NULL then.
--   resolution: the FIRST resolved event, even when the ticket is reopened later.
--   status per clock: met (stopped within target), breached (stopped after target, or
--     still running past target at the end of D), pending (still running, within target).

with

service_events as (
    select * from {{ ref('stg_raw__service_events') }}
),

sla_targets as (
    select * from {{ ref('sla_targets') }}
),

tickets as (
    select
        ticket_id,
        min(source_system) as source_system,
        coalesce(min(case when event_type = 'created' then event_at end), min(event_at)) as created_at,
        min(case when event_type = 'agent_reply' then event_at end) as first_agent_reply_at,
        min(case when event_type = 'resolved' then event_at end) as first_resolved_at,
        max(case when event_type = 'closed' then event_at end) as last_closed_at,
        max(event_at) as last_event_at,
        count(case when event_type = 'reopened' then 1 end) as reopen_count,
        count(case when event_type = 'agent_reply' then 1 end) as agent_reply_count,
        {{ min_by_known('priority', 'event_at') }} as priority,
        {{ min_by_known('category', 'event_at') }} as category,
        {{ min_by_known('channel', 'event_at') }} as channel,
        {{ max_by_known("case when event_type = 'csat' then csat_score end", 'event_at') }} as csat_score,
        max(case when event_type = 'csat' and csat_score is not null then event_at end) as csat_at,
        {{ max_by_known('nps_score', 'event_at') }} as nps_score
    from service_events
    group by ticket_id
),

clocked as (
    select
        tickets.*,
        coalesce(tickets.priority, '{{ var("default_ticket_priority") }}') as sla_priority,
        tickets.priority is null as is_priority_defaulted,
        sla_targets.first_response_minutes as first_response_target_minutes,
        sla_targets.resolution_minutes as resolution_target_minutes,
        {{ minutes_between('tickets.created_at', 'tickets.first_agent_reply_at') }} as first_response_minutes,
        {{ minutes_between('tickets.created_at', 'tickets.first_resolved_at') }} as resolution_minutes,
        coalesce(
            tickets.first_resolved_at < tickets.first_agent_reply_at
            or (tickets.first_resolved_at is not null and tickets.first_agent_reply_at is null),
            false
        ) as is_resolved_before_first_reply,
        least(tickets.first_agent_reply_at, tickets.first_resolved_at) as first_response_clock_stopped_at,
        {{ minutes_between('tickets.created_at', business_day_end_utc(as_of_date())) }} as minutes_open_at_as_of
    from tickets
    left join sla_targets
        on coalesce(tickets.priority, '{{ var("default_ticket_priority") }}') = sla_targets.priority
),

final as (
    select
        *,
        case
            when first_response_clock_stopped_at is not null
                then case
                        when {{ minutes_between('created_at', 'first_response_clock_stopped_at') }}
                            <= first_response_target_minutes then 'met'
                        else 'breached'
                    end
            when minutes_open_at_as_of > first_response_target_minutes then 'breached'
            else 'pending'
        end as first_response_sla_status,
        case
            when first_resolved_at is not null
                then case
                        when resolution_minutes <= resolution_target_minutes then 'met'
                        else 'breached'
                    end
            when minutes_open_at_as_of > resolution_target_minutes then 'breached'
            else 'pending'
        end as resolution_sla_status
    from clocked
)

select * from final
