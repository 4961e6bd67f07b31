-- The open-ticket backlog at the end of each business day, from the first ticket's day to
-- D (docs/warehouse.md "Ticket backlog"): one row per day x status x priority x age band
-- with at least one open ticket.
--   open: since the ticket's `created` (else first) or latest `reopened` event, no later
--     `resolved` or `closed` event (events up to the end of the day, by business date);
--   status of an open ticket: reopened (ever reopened), in_progress (an agent replied),
--     assigned (assigned, no reply yet), new;
--   priority: sla_priority (the delivered priority, else the default);
--   age band: whole days from the creation date to the day, banded by var
--     backlog_age_band_days;
--   open breaches: open tickets whose resolution target (calendar clock: created_at +
--     target) ran out before the end of the day, with the hours since; first-response
--     breaches: open tickets without an agent reply past their first-response target.

{%- set bands = var('backlog_age_band_days') %}
{#- `when age_days >= 30 then '30d+' when age_days >= 7 then '7-29d' ...`, widest band first -#}
{%- set age_band_whens = namespace(sql='') %}
{%- for lower in bands %}
{%- set label = lower ~ 'd+' if loop.last else lower ~ '-' ~ (bands[loop.index] - 1) ~ 'd' %}
{%- set separator = '\n            ' if age_band_whens.sql else '' %}
{%- set age_band_whens.sql = "when age_days >= " ~ lower ~ " then '" ~ label ~ "'" ~ separator ~ age_band_whens.sql %}
{%- endfor %}

with

service_events as (
    select * from {{ ref('stg_raw__service_events') }}
),

service_tickets as (
    select * from {{ ref('fct_service_tickets') }}
),

lifecycle as (
    select
        ticket_id,
        event_at,
        event_date,
        max(case when event_type in ('created', 'reopened') then event_at end) over (
            partition by ticket_id order by event_at rows between unbounded preceding and current row
        ) as opened_at,
        max(case when event_type in ('resolved', 'closed') then event_at end) over (
            partition by ticket_id order by event_at rows between unbounded preceding and current row
        ) as closed_at,
        count(case when event_type = 'assigned' then 1 end) over (
            partition by ticket_id order by event_at rows between unbounded preceding and current row
        ) as assignments,
        count(case when event_type = 'agent_reply' then 1 end) over (
            partition by ticket_id order by event_at rows between unbounded preceding and current row
        ) as agent_replies,
        count(case when event_type = 'reopened' then 1 end) over (
            partition by ticket_id order by event_at rows between unbounded preceding and current row
        ) as reopens,
        row_number() over (
            partition by ticket_id, event_date
            order by event_at desc, event_type desc
        ) as rank_in_day
    from service_events
    where
        event_type in ('created', 'assigned', 'agent_reply', 'reopened', 'resolved', 'closed')
        and event_date <= {{ as_of_date() }}
),

day_states as (
    -- the ticket's state at the end of each day with an event, valid until the day before
    -- its next event day (or D)
    select
        ticket_id,
        event_date as valid_from,
        coalesce(
            {{ add_days('lead(event_date) over (partition by ticket_id order by event_date)', -1) }},
            {{ as_of_date() }}
        ) as valid_to,
        (closed_at is null or coalesce(opened_at > closed_at, false)) as is_open,
        case
            when reopens > 0 then 'reopened'
            when agent_replies > 0 then 'in_progress'
            when assignments > 0 then 'assigned'
            else 'new'
        end as status,
        agent_replies > 0 as has_agent_reply
    from lifecycle
    where rank_in_day = 1
),

bounds as (
    select
        min(valid_from) as first_day,
        {{ as_of_date() }} as last_day
    from day_states
),

days as (
    select spine.day
    from bounds
    {{ day_spine_join('bounds.first_day', 'bounds.last_day', 'spine') }}
),

open_ticket_days as (
    select
        days.day as snapshot_date,
        day_states.status,
        day_states.has_agent_reply,
        service_tickets.sla_priority as priority,
        {{ days_between('service_tickets.created_date', 'days.day') }} as age_days,
        {{ add_minutes('service_tickets.created_at', 'service_tickets.resolution_target_minutes') }}
            as resolution_due_at,
        {{ add_minutes('service_tickets.created_at', 'service_tickets.first_response_target_minutes') }}
            as first_response_due_at,
        {{ business_day_end_utc('days.day') }} as day_end_at
    from day_states
    inner join days
        on days.day between day_states.valid_from and day_states.valid_to
    inner join service_tickets
        on day_states.ticket_id = service_tickets.ticket_id
    where day_states.is_open
),

banded as (
    select
        *,
        case
            {{ age_band_whens.sql }}
            else '0d'
        end as age_band,
        case when resolution_due_at < day_end_at then {{ minutes_between('resolution_due_at', 'day_end_at') }} / 60.0 end
            as resolution_breach_age_hours,
        not has_agent_reply and first_response_due_at < day_end_at as is_first_response_breached
    from open_ticket_days
),

final as (
    select
        cast(cast(snapshot_date as string) || '|' || status || '|' || priority || '|' || age_band as string)
            as backlog_daily_id,
        cast(snapshot_date as date) as snapshot_date,
        cast(status as string) as status,
        cast(priority as string) as priority,
        cast(age_band as string) as age_band,
        cast(count(*) as integer) as open_tickets,
        cast(count(case when is_first_response_breached then 1 end) as integer) as first_response_breached_tickets,
        cast(count(resolution_breach_age_hours) as integer) as resolution_breached_tickets,
        cast(avg(resolution_breach_age_hours) as double) as resolution_breach_age_hours_avg,
        cast(max(resolution_breach_age_hours) as double) as resolution_breach_age_hours_max
    from banded
    group by snapshot_date, status, priority, age_band
)

select * from final
