-- One row per ticket: who worked on it (docs/warehouse.md "Agents and assignment").
--   first_assigned_at: the first `assigned` event; first_assignment_minutes: calendar
--     minutes from creation (the `created` event, else the first event) to it.
--   agent_count: distinct agents on the ticket's `assigned`, `agent_reply` and `resolved`
--     events.
--   reassignment_count: `assigned` events whose agent differs from the agent of the
--     previous `assigned` event (the first assignment is not a reassignment; assigning the
--     same agent again is not one either).
--   agent_id: the ticket's agent, credited with its clocks in fct_agent_daily: the agent
--     of the first `resolved` event (who resolved it), else the agent of the last
--     `assigned` event (who holds it now), else the last agent who replied. Pseudonymised
--     in fct_service_tickets (agents are people).
--   is_one_touch_resolution: resolved, exactly one `agent_reply` in the ticket's life,
--     never reopened.
--   team: the agent's team in seed agent_teams (keyed by the source agent id), else
--     'unassigned' (no agent, or an agent missing from the seed).

with

service_events as (
    select * from {{ ref('stg_raw__service_events') }}
),

agent_teams as (
    select * from {{ ref('agent_teams') }}
),

assignments as (
    select
        ticket_id,
        agent_id,
        event_at,
        lag(agent_id) over (partition by ticket_id order by event_at, agent_id) as previous_agent_id
    from service_events
    where event_type = 'assigned' and agent_id is not null
),

reassignments as (
    select
        ticket_id,
        count(
            case when previous_agent_id is not null and agent_id != previous_agent_id then 1 end
        ) as reassignment_count
    from assignments
    group by ticket_id
),

tickets as (
    select
        ticket_id,
        coalesce(min(case when event_type = 'created' then event_at end), min(event_at)) as created_at,
        min(case when event_type = 'assigned' then event_at end) as first_assigned_at,
        min(case when event_type = 'resolved' then event_at end) as first_resolved_at,
        count(case when event_type = 'agent_reply' then 1 end) as agent_reply_count,
        count(case when event_type = 'reopened' then 1 end) as reopen_count,
        count(
            distinct case when event_type in ('assigned', 'agent_reply', 'resolved') then agent_id end
        ) as agent_count,
        {{ min_by_known("case when event_type = 'resolved' then agent_id end", 'event_at') }} as resolving_agent_id,
        {{ max_by_known("case when event_type = 'assigned' then agent_id end", 'event_at') }} as last_assigned_agent_id,
        {{ max_by_known("case when event_type = 'agent_reply' then agent_id end", 'event_at') }} as last_replying_agent_id
    from service_events
    group by ticket_id
),

tickets_with_agent as (
    select
        *,
        coalesce(resolving_agent_id, last_assigned_agent_id, last_replying_agent_id) as source_agent_id
    from tickets
),

final as (
    select
        tickets.ticket_id,
        tickets.first_assigned_at,
        {{ minutes_between('tickets.created_at', 'tickets.first_assigned_at') }} as first_assignment_minutes,
        tickets.agent_count,
        coalesce(reassignments.reassignment_count, 0) as reassignment_count,
        coalesce(
            tickets.first_resolved_at is not null
            and tickets.agent_reply_count = 1
            and tickets.reopen_count = 0,
            false
        ) as is_one_touch_resolution,
        tickets.source_agent_id,
        coalesce(agent_teams.team, 'unassigned') as team
    from tickets_with_agent as tickets
    left join reassignments
        on tickets.ticket_id = reassignments.ticket_id
    left join agent_teams
        on tickets.source_agent_id = agent_teams.agent_id
)

select * from final
