-- One row per ticket: its life from the event log, and the SLA clocks as of the end of D
-- (calendar minutes; docs/warehouse.md "SLA clocks").
--   first response: the first agent_reply. A ticket resolved before any agent reply has
--     its first-response clock stopped by the resolution (the customer got an answer);
--     first_response_minutes (the p50/p90 measure) stays the agent-reply time, NULL then.
--   resolution: the FIRST resolved event, even when the ticket is reopened later.
--   status per clock: met (stopped within target), breached (stopped after target, or
--     still running past target at the end of D), pending (still running, within target).
-- The business-hours clock (docs/warehouse.md "SLA clocks") counts the same targets in
-- working minutes: the minutes inside the working windows (int_business_hours_windows:
-- seed business_hours on the working days of the holidays-library calendar), paused while
-- the ticket waits on the customer. A waiting period runs from an agent_reply (the first
-- one since the customer last wrote) to the customer's next customer_reply; an agent reply
-- the customer never answers opens no waiting period (the landing contract's
-- status_changed events carry no status, so replies are the only evidence of waiting).
--   runs: the intervals the clock runs: from creation to the first waiting period, between
--     waiting periods, and after the last one (open-ended, up to var
--     business_clock_horizon_days of working windows after its start);
--   pieces: runs cut by the working windows, numbered by a running total of minutes;
--   due_at: the instant the target's working minutes are used up, i.e. the clock exceeds
--     the target from then on (on the first working instant after a closed period when
--     the target is used up exactly at the end of a window);
--   status as on the calendar clock, with working minutes.

with

service_events as (
    select * from {{ ref('stg_raw__service_events') }}
),

sla_targets as (
    select * from {{ ref('sla_targets') }}
),

business_days as (
    select * from {{ ref('stg_calendar__business_days') }}
),

working_windows as (
    select * from {{ ref('int_business_hours_windows') }}
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

replies as (
    -- customer_turn: customer replies strictly before the event (ties: agent first)
    select
        ticket_id,
        event_type,
        event_at,
        coalesce(sum(case when event_type = 'customer_reply' then 1 else 0 end) over (
            partition by ticket_id
            order by event_at, case when event_type = 'customer_reply' then 1 else 0 end, service_event_id
            rows between unbounded preceding and 1 preceding
        ), 0) as customer_turn
    from service_events
    where event_type in ('agent_reply', 'customer_reply')
),

waiting_turns as (
    select
        ticket_id,
        customer_turn,
        min(case when event_type = 'agent_reply' then event_at end) as waiting_from,
        min(case when event_type = 'customer_reply' then event_at end) as waiting_until
    from replies
    group by ticket_id, customer_turn
),

waiting_periods as (
    -- clipped to the ticket's life: the clocks start at creation
    select
        waiting_turns.ticket_id,
        greatest(waiting_turns.waiting_from, tickets.created_at) as waiting_from,
        waiting_turns.waiting_until
    from waiting_turns
    inner join tickets
        on waiting_turns.ticket_id = tickets.ticket_id
    where
        waiting_turns.waiting_from < waiting_turns.waiting_until
        and waiting_turns.waiting_until > tickets.created_at
),

clock_marks as (
    -- the clock runs from creation and from the end of each waiting period; it pauses at
    -- the start of each (they alternate: the periods do not overlap)
    select
        ticket_id,
        created_at as mark_at,
        0 as is_pause
    from tickets
    union all
    select
        ticket_id,
        waiting_until as mark_at,
        0 as is_pause
    from waiting_periods
    union all
    select
        ticket_id,
        waiting_from as mark_at,
        1 as is_pause
    from waiting_periods
),

runs as (
    select
        ticket_id,
        run_from,
        run_to
    from (
        select
            ticket_id,
            mark_at as run_from,
            is_pause,
            lead(mark_at) over (partition by ticket_id order by mark_at, is_pause) as run_to
        from clock_marks
    ) as ordered_marks
    where is_pause = 0
),

pieces as (
    select
        runs.ticket_id,
        greatest(runs.run_from, working_windows.window_start_at) as piece_from,
        {{ minutes_between(
            'greatest(runs.run_from, working_windows.window_start_at)',
            'least(coalesce(runs.run_to, working_windows.window_end_at), working_windows.window_end_at)'
        ) }} as piece_minutes
    from runs
    inner join working_windows
        on
            {{ add_days(to_business_date('runs.run_from'), -1) }} <= working_windows.calendar_date
            and coalesce(
                {{ to_business_date('runs.run_to') }},
                {{ add_days(to_business_date('runs.run_from'), var('business_clock_horizon_days')) }}
            ) >= working_windows.calendar_date
            and runs.run_from < working_windows.window_end_at
            and (runs.run_to is null or runs.run_to > working_windows.window_start_at)
),

pieces_totalled as (
    select
        ticket_id,
        piece_from,
        piece_minutes,
        sum(piece_minutes) over (
            partition by ticket_id order by piece_from rows between unbounded preceding and current row
        ) as minutes_through
    from pieces
),

targeted as (
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

{%- set end_of_d = business_day_end_utc(as_of_date()) %}

business_clocks as (
    select
        targeted.ticket_id,
        coalesce({{ working_minutes_until('pieces_totalled', 'targeted.first_response_clock_stopped_at') }}, 0)
            as first_response_clock_business_minutes,
        coalesce({{ working_minutes_until('pieces_totalled', 'targeted.first_agent_reply_at') }}, 0) as first_response_business_minutes,
        coalesce({{ working_minutes_until('pieces_totalled', 'targeted.first_resolved_at') }}, 0) as resolution_business_minutes,
        coalesce({{ working_minutes_until('pieces_totalled', end_of_d) }}, 0) as business_minutes_open_at_as_of,
        {{ business_due_at('pieces_totalled', 'targeted.first_response_target_minutes') }} as first_response_business_due_at,
        {{ business_due_at('pieces_totalled', 'targeted.resolution_target_minutes') }} as resolution_business_due_at
    from targeted
    left join pieces_totalled
        on targeted.ticket_id = pieces_totalled.ticket_id
    group by targeted.ticket_id
),

waiting as (
    select
        targeted.ticket_id,
        sum({{ minutes_between(
            'waiting_periods.waiting_from',
            'least(waiting_periods.waiting_until, coalesce(targeted.first_resolved_at, ' ~ end_of_d ~ '))'
        ) }}) as waiting_minutes
    from targeted
    inner join waiting_periods
        on targeted.ticket_id = waiting_periods.ticket_id
    where waiting_periods.waiting_from < coalesce(targeted.first_resolved_at, {{ end_of_d }})
    group by targeted.ticket_id
),

clocked as (
    -- the business clock needs the calendar of the ticket's creation date: without it
    -- (a build without the pipeline's calendar) the business columns stay NULL
    select
        targeted.*,
        coalesce(waiting.waiting_minutes, 0) as waiting_minutes,
        business_days.calendar_date is not null as has_business_calendar,
        case
            when business_days.calendar_date is not null and targeted.first_agent_reply_at is not null
                then business_clocks.first_response_business_minutes
        end as first_response_business_minutes,
        case
            when business_days.calendar_date is not null and targeted.first_resolved_at is not null
                then business_clocks.resolution_business_minutes
        end as resolution_business_minutes,
        business_clocks.first_response_clock_business_minutes,
        business_clocks.business_minutes_open_at_as_of,
        case
            when business_days.calendar_date is not null then business_clocks.first_response_business_due_at
        end as first_response_business_due_at,
        case
            when business_days.calendar_date is not null then business_clocks.resolution_business_due_at
        end as resolution_business_due_at
    from targeted
    left join business_clocks
        on targeted.ticket_id = business_clocks.ticket_id
    left join waiting
        on targeted.ticket_id = waiting.ticket_id
    left join business_days
        on {{ to_business_date('targeted.created_at') }} = business_days.calendar_date
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
        end as resolution_sla_status,
        case
            when not has_business_calendar then null
            when first_response_clock_stopped_at is not null
                then case
                        when first_response_clock_business_minutes <= first_response_target_minutes then 'met'
                        else 'breached'
                    end
            when business_minutes_open_at_as_of > first_response_target_minutes then 'breached'
            else 'pending'
        end as first_response_business_sla_status,
        case
            when not has_business_calendar then null
            when first_resolved_at is not null
                then case
                        when resolution_business_minutes <= resolution_target_minutes then 'met'
                        else 'breached'
                    end
            when business_minutes_open_at_as_of > resolution_target_minutes then 'breached'
            else 'pending'
        end as resolution_business_sla_status
    from clocked
),

breaches as (
    -- the instant each clock's target runs out, unless the clock was met
    select
        *,
        case
            when first_response_sla_status != 'met'
                then {{ add_minutes('created_at', 'first_response_target_minutes') }}
        end as first_response_breach_at,
        case
            when resolution_sla_status != 'met' then {{ add_minutes('created_at', 'resolution_target_minutes') }}
        end as resolution_breach_at,
        case
            when first_response_business_sla_status != 'met' then first_response_business_due_at
        end as first_response_business_breach_at,
        case
            when resolution_business_sla_status != 'met' then resolution_business_due_at
        end as resolution_business_breach_at
    from final
)

select * from breaches
