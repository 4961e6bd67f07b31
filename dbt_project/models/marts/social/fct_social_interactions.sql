{{
    config(
        materialized=crm_incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='interaction_id',
        on_schema_change='append_new_columns',
        post_hook="{{ keep_written_keys() }}",
    )
}}

-- depends_on: {{ ref('int_source_records_logged') }} (the customer-change log, read by
-- keys_with_changed_customer in incremental runs), {{ ref('stg_raw__orders') }} (the orders
-- delivered since the last build, read by delivered_since_build)

-- One row per social interaction (content left out: it may hold personal data), with
--   is_replied_24h: inbound `message`s answered by an outbound `message` to the same
--     account within var message_reply_hours (NULL for other interactions);
--   is_campaign_responded_7d: outbound `campaign_push`es to a resolved customer followed
--     within var campaign_response_days by an inbound interaction (any of the customer's
--     accounts) or a non-cancelled order of the customer (NULL for other interactions).

with

source_records_resolved as (
    select * from {{ ref('int_source_records_resolved') }}
),

{% if is_incremental() %}
changed_accounts as (
    {{ keys_with_changed_customer('social_interactions') }}
),

changed_customers as (
    select social_records.customer_id
    from source_records_resolved as social_records
    where
        social_records.entity = 'social_interactions'
        and social_records.record_key in (select changed_accounts.record_key from changed_accounts)
),

-- Late arrivals: interactions delivered since the last build and orders delivered (or
-- moved to another customer) since then, dated before the window (within it, what they
-- answer is in the window too). They change their own row and the messages and pushes
-- before them that they answer: every interaction of their accounts and of their
-- customers' accounts is recomputed, whatever its date.
late_accounts as (
    select delivered.social_account_key as record_key
    from ({{ delivered_since_build('stg_raw__social_interactions') }}) as delivered
    where delivered.occurred_date < {{ incremental_cutoff_date() }}
),

late_customers as (
    select social_records.customer_id
    from source_records_resolved as social_records
    where
        social_records.entity = 'social_interactions'
        and social_records.record_key in (select late_accounts.record_key from late_accounts)
    union
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

-- The accounts whose every interaction is recomputed, whatever its date: those whose
-- customer changed, the late arrivals' accounts and their customers' accounts.
recomputed_accounts as (
    select changed_accounts.record_key from changed_accounts
    union
    select late_accounts.record_key from late_accounts
    union
    select social_records.record_key
    from source_records_resolved as social_records
    where
        social_records.entity = 'social_interactions'
        and social_records.customer_id in (select late_customers.customer_id from late_customers)
),

-- The accounts whose interactions the rows kept below can depend on, whatever their date:
-- a kept interaction of a recomputed account may be answered by any interaction of that
-- account or of its customer.
scoped_accounts as (
    select recomputed_accounts.record_key from recomputed_accounts
    union
    select social_records.record_key
    from source_records_resolved as social_records
    where
        social_records.entity = 'social_interactions'
        and social_records.customer_id in (select changed_customers.customer_id from changed_customers)
),
{% endif %}

-- Incremental runs read only the interactions the rows kept below can depend on: replies
-- and responses come after the interaction they answer (so from the cutoff on), and the
-- interactions of the scoped accounts. The filter comes before the customer lookup and
-- the self-joins (filtering after the lookup looked up every interaction ever staged: 37 s
-- of the large night).
interactions as (
    select * from {{ ref('stg_raw__social_interactions') }}
    {% if is_incremental() %}
    where
        occurred_date >= {{ incremental_cutoff_date(var('campaign_response_days') + 1) }}
        or social_account_key in (select scoped_accounts.record_key from scoped_accounts)
    {% endif %}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

interactions_with_customer as (
    select
        interactions.*,
        source_records_resolved.customer_id
    from interactions
    left join source_records_resolved
        on interactions.social_account_key = source_records_resolved.record_key
            and source_records_resolved.entity = 'social_interactions'
),

message_replies as (
    select inbound.interaction_id
    from interactions_with_customer as inbound
    inner join interactions_with_customer as outbound
        on inbound.social_account_key = outbound.social_account_key
            and outbound.direction = 'outbound'
            and outbound.interaction_type = 'message'
            and inbound.occurred_at < outbound.occurred_at
            and outbound.occurred_at <= {{ add_minutes('inbound.occurred_at', var('message_reply_hours') * 60) }}
    where inbound.direction = 'inbound' and inbound.interaction_type = 'message'
    group by inbound.interaction_id
),

pushes as (
    select
        interaction_id,
        customer_id,
        occurred_at
    from interactions_with_customer
    where
        direction = 'outbound'
        and interaction_type = 'campaign_push'
        and customer_id is not null
),

push_responses as (
    select pushes.interaction_id
    from pushes
    inner join interactions_with_customer as responses
        on pushes.customer_id = responses.customer_id
            and responses.direction = 'inbound'
            and pushes.occurred_at < responses.occurred_at
            and responses.occurred_at <= {{ add_minutes('pushes.occurred_at', var('campaign_response_days') * 1440) }}

    union

    select pushes.interaction_id
    from pushes
    inner join orders
        on pushes.customer_id = orders.customer_id
            and not orders.is_cancelled
            and pushes.occurred_at < orders.ordered_at
            and orders.ordered_at <= {{ add_minutes('pushes.occurred_at', var('campaign_response_days') * 1440) }}
),

final as (
    select
        cast(interactions_with_customer.interaction_id as string) as interaction_id,
        cast(interactions_with_customer.source_interaction_id as string) as source_interaction_id,
        cast(interactions_with_customer.platform as string) as platform,
        {{ pseudonym('interactions_with_customer.social_account_key') }} as social_account_key,
        cast(interactions_with_customer.customer_id as string) as customer_id,
        cast(interactions_with_customer.occurred_at as timestamp) as occurred_at,
        cast({{ to_business_timestamp('interactions_with_customer.occurred_at') }} as timestamp) as occurred_at_local,
        cast(interactions_with_customer.occurred_date as date) as occurred_date,
        cast(interactions_with_customer.direction as string) as direction,
        cast(interactions_with_customer.direction = 'inbound' as boolean) as is_inbound,
        cast(interactions_with_customer.interaction_type as string) as interaction_type,
        cast(interactions_with_customer.campaign_id as string) as campaign_id,
        cast(interactions_with_customer.content is not null as boolean) as has_content,
        cast(case
            when interactions_with_customer.direction = 'inbound' and interactions_with_customer.interaction_type = 'message'
                then message_replies.interaction_id is not null
        end as boolean) as is_replied_24h,
        cast(case
            when pushes.interaction_id is not null then push_responses.interaction_id is not null
        end as boolean) as is_campaign_responded_7d
    from interactions_with_customer
    left join message_replies
        on interactions_with_customer.interaction_id = message_replies.interaction_id
    left join pushes
        on interactions_with_customer.interaction_id = pushes.interaction_id
    left join push_responses
        on interactions_with_customer.interaction_id = push_responses.interaction_id
    {% if is_incremental() %}
    where
        interactions_with_customer.occurred_date >= {{ incremental_cutoff_date(var('campaign_response_days') + 1) }}
        or interactions_with_customer.social_account_key in (select recomputed_accounts.record_key from recomputed_accounts)
    {% endif %}
)

select * from final
