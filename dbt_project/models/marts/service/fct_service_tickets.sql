{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='ticket_id',
        on_schema_change='append_new_columns',
        post_hook="{{ keep_written_keys() }}",
    )
}}

-- depends_on: {{ ref('int_source_records_logged') }} (the customer-change log, read by
-- keys_with_changed_customer in incremental runs), {{ ref('stg_raw__service_events') }},
-- {{ ref('stg_raw__orders') }} (the rows delivered since the last build, read by
-- delivered_since_build)

-- One row per service ticket with its SLA clocks (int_service_tickets_sla_clocked), its
-- customer, and, for pre-sales inquiries, whether the customer ordered within
-- var demand_conversion_days after creation.

with

{% if is_incremental() %}
-- Late arrivals, whatever their date: tickets with an event delivered since the last
-- build, and the customers of orders delivered (or moved to another customer) since then
-- and dated before the window (an order in the window can only convert inquiries created
-- in the window): their inquiries' conversion may have changed.
delivered_tickets as (
    select delivered.ticket_id from ({{ delivered_since_build('stg_raw__service_events') }}) as delivered
),

late_order_customers as (
    select late_orders.customer_id
    from {{ ref('fct_orders') }} as late_orders
    where
        late_orders.order_date < {{ incremental_cutoff_date() }}
        and (
            late_orders.order_id in (
                select delivered.order_id from ({{ delivered_since_build('stg_raw__orders') }}) as delivered
            )
            or late_orders.order_id in ({{ keys_with_changed_customer('orders') }})
        )
),
{% endif %}

tickets as (
    select * from {{ ref('int_service_tickets_sla_clocked') }}
),

source_records_resolved as (
    select * from {{ ref('int_source_records_resolved') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

assignments as (
    select * from {{ ref('int_service_ticket_assignments') }}
),

tickets_with_customer as (
    select
        tickets.*,
        source_records_resolved.customer_id
    from tickets
    left join source_records_resolved
        on tickets.ticket_id = source_records_resolved.record_key
            and source_records_resolved.entity = 'service_events'
),

conversions as (
    select
        tickets_with_customer.ticket_id,
        min(orders.ordered_at) as converted_at
    from tickets_with_customer
    inner join orders
        on tickets_with_customer.customer_id = orders.customer_id
            and tickets_with_customer.created_at < orders.ordered_at
            and {{ add_minutes('tickets_with_customer.created_at', var('demand_conversion_days') * 1440) }} >= orders.ordered_at
            and not orders.is_cancelled
    where tickets_with_customer.category = 'inquiry'
    group by tickets_with_customer.ticket_id
),

final as (
    select
        cast(tickets_with_customer.ticket_id as string) as ticket_id,
        cast(tickets_with_customer.customer_id as string) as customer_id,
        cast(tickets_with_customer.source_system as string) as source_system,
        cast(tickets_with_customer.created_at as timestamp) as created_at,
        cast({{ to_business_timestamp('tickets_with_customer.created_at') }} as timestamp) as created_at_local,
        cast({{ to_business_date('tickets_with_customer.created_at') }} as date) as created_date,
        cast(tickets_with_customer.priority as string) as priority,
        cast(tickets_with_customer.sla_priority as string) as sla_priority,
        cast(tickets_with_customer.is_priority_defaulted as boolean) as is_priority_defaulted,
        cast(tickets_with_customer.category as string) as category,
        cast(tickets_with_customer.channel as string) as channel,
        cast(tickets_with_customer.first_agent_reply_at as timestamp) as first_agent_reply_at,
        cast({{ to_business_timestamp('tickets_with_customer.first_agent_reply_at') }} as timestamp) as first_agent_reply_at_local,
        cast(tickets_with_customer.first_resolved_at as timestamp) as first_resolved_at,
        cast({{ to_business_timestamp('tickets_with_customer.first_resolved_at') }} as timestamp) as first_resolved_at_local,
        cast(tickets_with_customer.last_closed_at as timestamp) as last_closed_at,
        cast({{ to_business_timestamp('tickets_with_customer.last_closed_at') }} as timestamp) as last_closed_at_local,
        cast(tickets_with_customer.last_event_at as timestamp) as last_event_at,
        cast({{ to_business_timestamp('tickets_with_customer.last_event_at') }} as timestamp) as last_event_at_local,
        cast(tickets_with_customer.first_response_minutes as double) as first_response_minutes,
        cast(tickets_with_customer.resolution_minutes as double) as resolution_minutes,
        cast(tickets_with_customer.first_response_target_minutes as integer) as first_response_target_minutes,
        cast(tickets_with_customer.resolution_target_minutes as integer) as resolution_target_minutes,
        cast(tickets_with_customer.is_resolved_before_first_reply as boolean) as is_resolved_before_first_reply,
        cast(tickets_with_customer.first_response_sla_status as string) as first_response_sla_status,
        cast(tickets_with_customer.resolution_sla_status as string) as resolution_sla_status,
        cast(case tickets_with_customer.first_response_sla_status
            when 'breached' then true when 'met' then false
        end as boolean) as is_first_response_breached,
        cast(case tickets_with_customer.resolution_sla_status
            when 'breached' then true when 'met' then false
        end as boolean) as is_resolution_breached,
        cast(tickets_with_customer.first_response_breach_at as timestamp) as first_response_breach_at,
        cast({{ to_business_timestamp('tickets_with_customer.first_response_breach_at') }} as timestamp) as first_response_breach_at_local,
        cast(tickets_with_customer.resolution_breach_at as timestamp) as resolution_breach_at,
        cast({{ to_business_timestamp('tickets_with_customer.resolution_breach_at') }} as timestamp) as resolution_breach_at_local,
        cast(tickets_with_customer.first_response_business_minutes as double) as first_response_business_minutes,
        cast(tickets_with_customer.resolution_business_minutes as double) as resolution_business_minutes,
        cast(tickets_with_customer.first_response_business_sla_status as string) as first_response_business_sla_status,
        cast(tickets_with_customer.resolution_business_sla_status as string) as resolution_business_sla_status,
        cast(tickets_with_customer.first_response_business_due_at as timestamp) as first_response_business_due_at,
        cast({{ to_business_timestamp('tickets_with_customer.first_response_business_due_at') }} as timestamp)
            as first_response_business_due_at_local,
        cast(tickets_with_customer.resolution_business_due_at as timestamp) as resolution_business_due_at,
        cast({{ to_business_timestamp('tickets_with_customer.resolution_business_due_at') }} as timestamp)
            as resolution_business_due_at_local,
        cast(tickets_with_customer.first_response_business_breach_at as timestamp) as first_response_business_breach_at,
        cast({{ to_business_timestamp('tickets_with_customer.first_response_business_breach_at') }} as timestamp)
            as first_response_business_breach_at_local,
        cast(tickets_with_customer.resolution_business_breach_at as timestamp) as resolution_business_breach_at,
        cast({{ to_business_timestamp('tickets_with_customer.resolution_business_breach_at') }} as timestamp)
            as resolution_business_breach_at_local,
        cast(tickets_with_customer.waiting_minutes as double) as waiting_minutes,
        cast(tickets_with_customer.reopen_count as integer) as reopen_count,
        cast(tickets_with_customer.reopen_count > 0 as boolean) as is_reopened,
        cast(tickets_with_customer.csat_score as integer) as csat_score,
        cast(tickets_with_customer.csat_at as timestamp) as csat_at,
        cast({{ to_business_timestamp('tickets_with_customer.csat_at') }} as timestamp) as csat_at_local,
        cast({{ to_business_date('tickets_with_customer.csat_at') }} as date) as csat_date,
        cast(tickets_with_customer.nps_score as integer) as nps_score,
        cast(tickets_with_customer.category = 'inquiry' as boolean) as is_inquiry,
        cast(case
            when tickets_with_customer.category = 'inquiry' and tickets_with_customer.customer_id is not null
                then conversions.converted_at is not null
        end as boolean) as is_converted_30d,
        cast(conversions.converted_at as timestamp) as converted_at,
        cast({{ to_business_timestamp('conversions.converted_at') }} as timestamp) as converted_at_local,
        cast({{ pseudonym('assignments.source_agent_id') }} as string) as agent_id,
        cast(coalesce(assignments.team, 'unassigned') as string) as team,
        cast(assignments.first_assigned_at as timestamp) as first_assigned_at,
        cast({{ to_business_timestamp('assignments.first_assigned_at') }} as timestamp) as first_assigned_at_local,
        cast(assignments.first_assignment_minutes as double) as first_assignment_minutes,
        cast(coalesce(assignments.agent_count, 0) as integer) as agent_count,
        cast(coalesce(assignments.reassignment_count, 0) as integer) as reassignment_count,
        cast(coalesce(assignments.is_one_touch_resolution, false) as boolean) as is_one_touch_resolution
    from tickets_with_customer
    left join conversions
        on tickets_with_customer.ticket_id = conversions.ticket_id
    left join assignments
        on tickets_with_customer.ticket_id = assignments.ticket_id
    {% if is_incremental() %}
    where
        {{ to_business_date('tickets_with_customer.created_at') }}
        >= {{ incremental_cutoff_date(var('demand_conversion_days')) }}
        or {{ to_business_date('tickets_with_customer.last_event_at') }} >= {{ incremental_cutoff_date() }}
        -- the business-hours clocks run for weeks (holidays, waiting): recomputed until
        -- the resolution target has run out (the first-response target runs out earlier)
        or tickets_with_customer.resolution_business_due_at is null
        or {{ to_business_date('tickets_with_customer.resolution_business_due_at') }} >= {{ incremental_cutoff_date() }}
        or tickets_with_customer.ticket_id in ({{ keys_with_changed_customer('service_events') }})
        or tickets_with_customer.ticket_id in (select delivered_tickets.ticket_id from delivered_tickets)
        or (
            tickets_with_customer.category = 'inquiry'
            and tickets_with_customer.customer_id in (select late_order_customers.customer_id from late_order_customers)
        )
    {% endif %}
)

select * from final
