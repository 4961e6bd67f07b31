-- Agent and team work per day (docs/warehouse.md "Agents and assignment"): one row per
-- business day x agent (level `agent`) and per business day x team (level `team`).
-- A ticket counts for its agent and team (fct_service_tickets.agent_id, team) on the day
-- it was created, like the monthly service KPIs, so a month of team rows adds up to the
-- month's tickets. Tickets without an agent count only in team `unassigned`.
--   SLA rates: met / (met + breached) of the tickets' clocks as of the end of D (pending
--     clocks count in neither), on the calendar clock and on the business-hours clock
--     (first_response_business_*, resolution_business_*: working minutes, waiting on the
--     customer paused; docs/warehouse.md "SLA clocks"); CSAT: mean of the tickets' latest answered surveys;
--   reopen rate: reopened tickets / tickets handled; one-touch rate: one-touch
--     resolutions / resolved tickets.

with

service_tickets as (
    select * from {{ ref('fct_service_tickets') }}
),

ticket_levels as (
    select
        'agent' as level,
        agent_id,
        team,
        created_date,
        first_response_sla_status,
        resolution_sla_status,
        first_response_business_sla_status,
        resolution_business_sla_status,
        csat_score,
        reopen_count,
        is_one_touch_resolution,
        first_resolved_at
    from service_tickets
    where agent_id is not null
    union all
    select
        'team' as level,
        cast(null as string) as agent_id,
        team,
        created_date,
        first_response_sla_status,
        resolution_sla_status,
        first_response_business_sla_status,
        resolution_business_sla_status,
        csat_score,
        reopen_count,
        is_one_touch_resolution,
        first_resolved_at
    from service_tickets
),

measured as (
    select
        level,
        created_date,
        agent_id,
        team,
        count(*) as tickets_handled,
        count(case when first_resolved_at is not null then 1 end) as tickets_resolved,
        count(case when first_response_sla_status = 'met' then 1 end) as first_response_met,
        count(case when first_response_sla_status in ('met', 'breached') then 1 end) as first_response_decided,
        count(case when resolution_sla_status = 'met' then 1 end) as resolution_met,
        count(case when resolution_sla_status in ('met', 'breached') then 1 end) as resolution_decided,
        count(case when first_response_business_sla_status = 'met' then 1 end) as first_response_business_met,
        count(case when first_response_business_sla_status in ('met', 'breached') then 1 end)
            as first_response_business_decided,
        count(case when resolution_business_sla_status = 'met' then 1 end) as resolution_business_met,
        count(case when resolution_business_sla_status in ('met', 'breached') then 1 end)
            as resolution_business_decided,
        count(csat_score) as csat_surveys,
        sum(csat_score) as csat_total,
        count(case when reopen_count > 0 then 1 end) as reopened_tickets,
        count(case when is_one_touch_resolution then 1 end) as one_touch_tickets
    from ticket_levels
    group by level, created_date, agent_id, team
),

final as (
    select
        cast(
            cast(created_date as string) || '|' || level || '|' || coalesce(agent_id, team) as string
        ) as agent_daily_id,
        cast(created_date as date) as activity_date,
        cast(level as string) as level,
        cast(agent_id as string) as agent_id,
        cast(team as string) as team,
        cast(tickets_handled as integer) as tickets_handled,
        cast(tickets_resolved as integer) as tickets_resolved,
        cast(first_response_met as integer) as first_response_met,
        cast(first_response_decided as integer) as first_response_decided,
        cast({{ safe_ratio('first_response_met', 'first_response_decided') }} as double) as first_response_sla_rate,
        cast(resolution_met as integer) as resolution_met,
        cast(resolution_decided as integer) as resolution_decided,
        cast({{ safe_ratio('resolution_met', 'resolution_decided') }} as double) as resolution_sla_rate,
        cast(first_response_business_met as integer) as first_response_business_met,
        cast(first_response_business_decided as integer) as first_response_business_decided,
        cast({{ safe_ratio('first_response_business_met', 'first_response_business_decided') }} as double)
            as first_response_business_sla_rate,
        cast(resolution_business_met as integer) as resolution_business_met,
        cast(resolution_business_decided as integer) as resolution_business_decided,
        cast({{ safe_ratio('resolution_business_met', 'resolution_business_decided') }} as double)
            as resolution_business_sla_rate,
        cast(csat_surveys as integer) as csat_surveys,
        cast({{ safe_ratio('csat_total', 'csat_surveys') }} as double) as csat_avg,
        cast(reopened_tickets as integer) as reopened_tickets,
        cast({{ safe_ratio('reopened_tickets', 'tickets_handled') }} as double) as reopen_rate,
        cast(one_touch_tickets as integer) as one_touch_tickets,
        cast({{ safe_ratio('one_touch_tickets', 'tickets_resolved') }} as double) as one_touch_resolution_rate
    from measured
)

select * from final
