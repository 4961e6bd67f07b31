{{ config(materialized='table') }}

-- A table: as a view its data tests and int_customers_quadrant_assigned each counted the
-- interactions and tickets of the window again (docs/performance.md).
--
-- engagement_90d per customer (metrics.md, "Value x potential quadrant"): inbound social
-- interactions plus service tickets of category `inquiry` dated in [D-89, D].

with

social_interactions as (
    select * from {{ ref('fct_social_interactions') }}
),

service_tickets as (
    select * from {{ ref('fct_service_tickets') }}
),

engagements as (
    select
        customer_id,
        'social' as engagement_source
    from social_interactions
    where
        customer_id is not null
        and is_inbound
        and occurred_date between {{ add_days(as_of_date(), -var('engagement_window_days')) }} and {{ as_of_date() }}

    union all

    select
        customer_id,
        'inquiry' as engagement_source
    from service_tickets
    where
        customer_id is not null
        and category = 'inquiry'
        and created_date between {{ add_days(as_of_date(), -var('engagement_window_days')) }} and {{ as_of_date() }}
),

counted as (
    select
        customer_id,
        count(*) as engagement_90d,
        count(case when engagement_source = 'social' then 1 end) as inbound_social_90d,
        count(case when engagement_source = 'inquiry' then 1 end) as inquiries_90d
    from engagements
    group by customer_id
)

select * from counted
