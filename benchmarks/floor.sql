-- The floor of the scaling benchmark: DuckDB alone, one hand-written SQL script, computing
-- the warehouse's core outputs from the raw tables as of D (docs/benchmarks.md):
--
--   floor.customer_records  every identity record with its customer (identity resolution:
--                           phone / e-mail / unionid / account and social references,
--                           super-node guard, connected components)
--   floor.customers         one row per resolved customer: order state as of D (first / last
--                           order, orders lifetime and in [D-364, D], net revenue, recency,
--                           VIP, lifecycle stage) and RFM scores and segment
--   floor.kpi_monthly       the customer and order KPIs of marts.fct_kpi_monthly for segment
--                           'all' (month, kpi, value, numerator, denominator)
--
-- The definitions are those of the dbt project (docs/warehouse.md); the tables are built
-- from scratch as of D, like `dbt build --full-refresh`. Not covered: the golden record,
-- service / social / profile KPIs, the vip / lifecycle / quadrant / RF / channel segments,
-- CLV, tests.
--
-- Inputs: raw.customers, raw.orders, raw.service_events, raw.social_interactions (the
-- loader's raw tables), seeds.currency_rates and seeds.rfm_segment_map (the dbt seeds).
-- Parameters (DuckDB variables, set before the script):
--   SET VARIABLE as_of = DATE '2026-10-31';   -- D
--   SET VARIABLE tz = 'Asia/Shanghai';        -- business timezone
-- Thresholds are the dbt project's defaults (dbt_project.yml vars): super-node guard 20,
-- revenue window 364 days, VIP 50,000, lifecycle 89 / 179 / 364 days, 5 RFM buckets,
-- reporting currency CNY, ticket customer_ref system 'crm'.
--
-- Run it: python -m benchmarks.floor (see benchmarks/floor.py).

create schema if not exists floor;

-- helpers ------------------------------------------------------------------------------

create or replace temp macro biz_date(ts) as
    cast(timezone(getvariable('tz'), timezone('UTC', ts)) as date);

create or replace temp macro clean(v) as nullif(trim(cast(v as varchar)), '');

create or replace temp macro code(v) as nullif(lower(trim(cast(v as varchar))), '');

create or replace temp macro norm_email(v) as
    case
        when regexp_matches(
            lower(trim(cast(v as varchar))),
            '^[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}$'
        ) then lower(trim(cast(v as varchar)))
    end;

-- phone to E.164, CN default (macro normalize_phone), on the value without separators
create or replace temp macro e164(c, intl) as
    case
        when nullif(intl, '') is not null then
            case
                when intl like '86%'
                    and regexp_matches(
                        substr(intl, 3),
                        '^(1[3-9][0-9]{9}|10[0-9]{8}|2[0-9]{9}|[3-9][0-9]{9,10})$'
                    ) then '+' || intl
                when intl not like '86%' and regexp_matches(intl, '^[1-9][0-9]{7,14}$')
                    then '+' || intl
            end
        when regexp_matches(c, '^861[3-9][0-9]{9}$') then '+' || c
        when regexp_matches(c, '^0(10[0-9]{8}|2[0-9]{9}|[3-9][0-9]{9,10})$')
            then '+86' || substr(c, 2)
        when regexp_matches(c, '^1[3-9][0-9]{9}$') then '+86' || c
    end;

create or replace temp macro e164_of_cleaned(c) as
    e164(c, regexp_extract(c, '^(?:\+|00)([0-9]+)$', 1));

create or replace temp macro norm_phone(v) as
    e164_of_cleaned(regexp_replace(trim(cast(v as varchar)), '[\s\-\.\(\)/]', '', 'g'));

-- staging: as of D, one row per natural key (the latest delivery) ----------------------

create or replace temp table stg_customers as
select customer_key, phone, email, unionid, updated_at
from (
    select
        clean(source_system) || ':' || clean(customer_ref) as customer_key,
        norm_phone(phone) as phone,
        norm_email(email) as email,
        clean(unionid) as unionid,
        updated_at,
        _delivery_date, _loaded_at, _source_file, _source_line
    from raw.customers
    where _delivery_date <= getvariable('as_of') and biz_date(updated_at) <= getvariable('as_of')
)
qualify row_number() over (
    partition by customer_key, updated_at
    order by _delivery_date desc, _loaded_at desc, _source_file desc, _source_line desc
) = 1;

create or replace temp table stg_order_lines as
select *
from (
    select
        coalesce(clean(source_system), _source_name) || ':' || clean(order_id) as order_id,
        coalesce(clean(source_system), _source_name) as source_system,
        coalesce(line_no, 1) as line_no,
        clean(customer_ref) as customer_ref,
        coalesce(code(status) = 'cancelled', false) as is_cancelled,
        norm_phone(buyer_phone) as buyer_phone,
        norm_email(buyer_email) as buyer_email,
        quantity,
        unit_price,
        coalesce(discount_amount, 0) as discount_amount,
        coalesce(refunded_amount, 0) as refunded_amount,
        coalesce(upper(clean(currency)), 'CNY') as currency,
        ordered_at,
        biz_date(ordered_at) as order_date,
        _delivery_date, _loaded_at, _source_file, _source_line
    from raw.orders
    where _delivery_date <= getvariable('as_of') and biz_date(ordered_at) <= getvariable('as_of')
)
qualify row_number() over (
    partition by order_id, line_no
    order by _delivery_date desc, _loaded_at desc, _source_file desc, _source_line desc
) = 1;

-- Service events: deduplication keeps one of identical events, so the identifiers, the
-- first event and the `created` event of each ticket are the same with or without it.
create or replace temp table stg_service_events as
select
    clean(ticket_id) as ticket_id,
    code(event_type) as event_type,
    clean(customer_ref) as customer_ref,
    norm_phone(phone) as phone,
    norm_email(email) as email,
    clean(social_account_id) as social_account_id,
    event_at
from raw.service_events
where _delivery_date <= getvariable('as_of') and biz_date(event_at) <= getvariable('as_of');

create or replace temp table stg_social as
select social_account_key, account_id, unionid, phone, occurred_at
from (
    select
        code(platform) || ':' || clean(interaction_id) as interaction_id,
        code(platform) || ':' || clean(account_id) as social_account_key,
        clean(account_id) as account_id,
        clean(unionid) as unionid,
        norm_phone(phone) as phone,
        occurred_at,
        _delivery_date, _loaded_at, _source_file, _source_line
    from raw.social_interactions
    where _delivery_date <= getvariable('as_of') and biz_date(occurred_at) <= getvariable('as_of')
)
qualify row_number() over (
    partition by interaction_id
    order by _delivery_date desc, _loaded_at desc, _source_file desc, _source_line desc
) = 1;

-- orders: net revenue per line in the reporting currency, rounded to cents per line; an
-- order is cancelled when every line is, and sums the lines that are not ----------------

create or replace temp table orders as
with
reporting as (
    select rate_to_cny as reporting_rate from seeds.currency_rates where currency = 'CNY'
),
lines as (
    select
        l.order_id,
        l.source_system,
        l.customer_ref,
        l.is_cancelled,
        l.ordered_at,
        l.order_date,
        cast(round(
            cast(l.quantity * l.unit_price - l.discount_amount - l.refunded_amount as decimal(18, 2))
            * cast(r.rate_to_cny / reporting.reporting_rate as decimal(18, 6)),
            2
        ) as decimal(18, 2)) as net_revenue
    from stg_order_lines as l
    left join seeds.currency_rates as r on l.currency = r.currency
    cross join reporting
)
select
    order_id,
    coalesce(
        'account:' || min(source_system) || ':' || min(customer_ref), 'order:' || order_id
    ) as record_id,
    min(source_system) as source_system,
    min(customer_ref) as customer_ref,
    min(ordered_at) as ordered_at,
    min(order_date) as order_date,
    bool_and(is_cancelled) as is_cancelled,
    sum(case when not is_cancelled then net_revenue else 0 end) as net_revenue
from lines
group by order_id;

-- identity resolution ------------------------------------------------------------------

create or replace temp table records as
with seen as (
    select 'account:' || customer_key as record_id, updated_at as seen_at from stg_customers
    union all
    select record_id, ordered_at from orders
    union all
    select 'ticket:' || ticket_id, event_at from stg_service_events
    union all
    select 'social:' || social_account_key, occurred_at from stg_social
)
select
    record_id,
    split_part(record_id, ':', 1) in ('account', 'social') as is_long_lived,
    date_trunc('month', biz_date(min(seen_at))) as first_seen_month
from seen
group by record_id;

create or replace temp table identifiers as
with
order_records as (
    select l.*, o.record_id
    from stg_order_lines as l
    inner join orders as o on l.order_id = o.order_id
),
all_identifiers as (
    select 'account:' || customer_key as record_id, 'account' as kind, customer_key as value
    from stg_customers
    union all select 'account:' || customer_key, 'phone', phone from stg_customers
    union all select 'account:' || customer_key, 'email', email from stg_customers
    union all select 'account:' || customer_key, 'unionid', unionid from stg_customers
    union all select record_id, 'account', source_system || ':' || customer_ref from order_records
    union all select record_id, 'phone', buyer_phone from order_records
    union all select record_id, 'email', buyer_email from order_records
    union all select 'ticket:' || ticket_id, 'account', 'crm:' || customer_ref from stg_service_events
    union all select 'ticket:' || ticket_id, 'phone', phone from stg_service_events
    union all select 'ticket:' || ticket_id, 'email', email from stg_service_events
    union all
    select
        'ticket:' || ticket_id,
        'social',
        regexp_replace(
            social_account_id, '^(wechat|weibo|douyin|xiaohongshu|mini_program):', ''
        )
    from stg_service_events
    union all select 'social:' || social_account_key, 'social', account_id from stg_social
    union all select 'social:' || social_account_key, 'unionid', unionid from stg_social
    union all select 'social:' || social_account_key, 'phone', phone from stg_social
),
distinct_identifiers as (
    select distinct record_id, kind, value from all_identifiers where value is not null
),
dated as (
    select i.*, r.is_long_lived, r.first_seen_month
    from distinct_identifiers as i
    inner join records as r on i.record_id = r.record_id
),
guard as (
    -- a shared attribute links nothing when more than 20 long-lived records carry it, or
    -- more than 20 records first seen in one month
    select kind, value
    from (
        select kind, value, first_seen_month, count(*) as n, count(*) filter (is_long_lived) as n_long
        from dated
        where kind in ('phone', 'email', 'unionid')
        group by kind, value, first_seen_month
    )
    group by kind, value
    having sum(n_long) > 20 or max(n) > 20
)
select d.record_id, d.kind, d.value
from dated as d
anti join guard as g on d.kind = g.kind and d.value = g.value;

create or replace temp table edges as
with stars as (
    select record_id, min(record_id) over (partition by kind, value) as anchor
    from identifiers
)
select distinct record_id as a, anchor as b from stars where record_id <> anchor;

create or replace temp table nodes as
select record_id as node_id from records where is_long_lived
union
select record_id from identifiers;

create or replace temp table undirected_edges as
select a as from_node_id, b as to_node_id from edges
union
select b, a from edges;

-- connected components: minimum-label propagation, one row per node (USING KEY), only the
-- nodes whose label dropped feed the next round
create or replace table floor.customer_records as
with recursive labels (node_id, component_node_id) using key (node_id) as (
    select node_id, node_id as component_node_id from nodes
    union
    select e.to_node_id, min(labels.component_node_id)
    from labels
    inner join undirected_edges as e on labels.node_id = e.from_node_id
    inner join recurring.labels as current_labels on e.to_node_id = current_labels.node_id
    group by e.to_node_id
    having min(labels.component_node_id) < min(current_labels.component_node_id)
)
select
    node_id as record_id,
    component_node_id as component_record_id,
    md5(component_node_id) as customer_id
from labels;

-- customer state and RFM as of D --------------------------------------------------------

create or replace temp table customer_orders as
select o.order_id, o.order_date, o.net_revenue, c.customer_id
from orders as o
inner join floor.customer_records as c on o.record_id = c.record_id
where not o.is_cancelled;

create or replace table floor.customers as
with
summary as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) as orders_lifetime,
        count(*) filter (order_date >= getvariable('as_of') - 364) as orders_365d,
        coalesce(sum(net_revenue) filter (order_date >= getvariable('as_of') - 364), 0)
            as net_revenue_365d,
        sum(net_revenue) as net_revenue_lifetime
    from customer_orders
    group by customer_id
),
scored as (
    select
        *,
        date_diff('day', last_order_date, getvariable('as_of')) as recency_days,
        cast(1 + floor(5 * (rank() over (order by last_order_date asc) - 1) / count(*) over ())
            as integer) as r_score,
        cast(1 + floor(5 * (rank() over (order by orders_365d asc) - 1) / count(*) over ())
            as integer) as f_score,
        cast(1 + floor(5 * (rank() over (order by net_revenue_365d asc) - 1) / count(*) over ())
            as integer) as m_score
    from summary
),
segmented as (
    select s.*, m.segment as rfm_segment
    from scored as s
    left join seeds.rfm_segment_map as m
        on s.r_score between m.r_min and m.r_max and s.f_score between m.f_min and m.f_max
    qualify row_number() over (partition by s.customer_id order by m.priority) = 1
),
customers as (
    select distinct customer_id from floor.customer_records
)
select
    c.customer_id,
    s.first_order_date,
    s.last_order_date,
    coalesce(s.orders_lifetime, 0) as orders_lifetime,
    coalesce(s.orders_365d, 0) as orders_365d,
    coalesce(s.net_revenue_365d, 0) as net_revenue_365d,
    coalesce(s.net_revenue_lifetime, 0) as net_revenue_lifetime,
    s.recency_days,
    coalesce(s.net_revenue_365d >= 50000, false) as is_vip,
    case
        when s.first_order_date is null then 'prospect'
        when s.first_order_date >= getvariable('as_of') - 89 then 'new'
        when s.last_order_date >= getvariable('as_of') - 179 then 'active'
        when s.last_order_date >= getvariable('as_of') - 364 then 'dormant'
        else 'churned'
    end as lifecycle_stage,
    s.r_score,
    s.f_score,
    s.m_score,
    s.rfm_segment
from customers as c
left join segmented as s on c.customer_id = s.customer_id;

-- monthly KPIs, segment 'all' ----------------------------------------------------------

create or replace temp table months as
with bounds as (
    select least(
        (select min(order_date) from orders),
        (
            select min(biz_date(created_at))
            from (
                select coalesce(min(event_at) filter (event_type = 'created'), min(event_at))
                    as created_at
                from stg_service_events
                group by ticket_id
            )
        ),
        (select min(biz_date(occurred_at)) from stg_social),
        getvariable('as_of')
    ) as first_date
)
select
    cast(m as date) as month,
    cast(m as date) - 1 as start_date,
    least(last_day(cast(m as date)), getvariable('as_of')) as end_date
from bounds,
    generate_series(
        cast(date_trunc('month', first_date) as timestamp),
        cast(date_trunc('month', getvariable('as_of')) as timestamp),
        interval 1 month
    ) as spine(m);

-- Per customer and order date: running order count and revenue. A customer's state at any
-- date is the last running total on or before it (ASOF joins), so the customer-month grid
-- needs no join of every order with every month.
create or replace temp table customer_days as
select
    customer_id,
    order_date,
    sum(count(*)) over w as orders_to_date,
    sum(sum(net_revenue)) over w as revenue_to_date
from customer_orders
group by customer_id, order_date
window w as (partition by customer_id order by order_date);

create or replace temp table customer_months as
with
firsts as (
    select customer_id, min(order_date) as first_order_date from customer_days group by customer_id
),
grid as (
    select f.customer_id, f.first_order_date, m.month, m.start_date, m.end_date
    from firsts as f
    inner join months as m on f.first_order_date <= m.end_date
),
at_end as (
    select g.*, d.orders_to_date as orders_at_end, d.order_date as last_order_at_end,
        d.revenue_to_date as revenue_at_end
    from grid as g
    asof left join customer_days as d
        on g.customer_id = d.customer_id and d.order_date <= g.end_date
),
at_start as (
    select a.*, d.orders_to_date as orders_at_start, d.order_date as last_order_at_start,
        d.revenue_to_date as revenue_at_start
    from at_end as a
    asof left join customer_days as d
        on a.customer_id = d.customer_id and d.order_date <= a.start_date
),
year_before as (
    select s.*, d.revenue_to_date as revenue_before_window
    from at_start as s
    asof left join customer_days as d
        on s.customer_id = d.customer_id and d.order_date <= s.end_date - 365
)
select
    month,
    orders_at_end - coalesce(orders_at_start, 0) > 0 as is_purchasing,
    first_order_date between month and end_date as is_new_in_month,
    coalesce(last_order_at_end >= end_date - 179, false) as is_active_at_end,
    coalesce(last_order_at_start >= start_date - 179, false) as is_active_at_start,
    coalesce(
        last_order_at_start >= start_date - 364 and last_order_at_start < start_date - 179, false
    ) as is_dormant_at_start,
    revenue_at_end - coalesce(revenue_before_window, 0) >= 50000 as is_vip_at_end,
    coalesce(orders_at_start, 0) as orders_at_start,
    orders_at_end
from year_before;

create or replace table floor.kpi_monthly as
with
measures as (
    select
        month,
        count(*) filter (is_purchasing) as purchasing_customers,
        count(*) filter (is_new_in_month) as new_customers,
        count(*) filter (is_active_at_end) as active_customers,
        count(*) filter (orders_at_start > 0) as ordered_by_start,
        count(*) filter (orders_at_start > 0 and is_purchasing) as repurchasing_customers,
        count(*) filter (is_purchasing and orders_at_end >= 2) as returning_customers,
        count(*) filter (is_active_at_start) as active_at_start,
        count(*) filter (is_active_at_start and not is_active_at_end) as churned_customers,
        count(*) filter (is_dormant_at_start) as dormant_at_start,
        count(*) filter (is_dormant_at_start and is_purchasing) as reactivated_customers,
        count(*) filter (is_vip_at_end) as vip_customers
    from customer_months
    group by month
),
all_orders as (
    -- orders and revenue count every order, with or without a resolved customer
    select
        date_trunc('month', order_date) as month,
        count(*) as orders,
        sum(net_revenue) as net_revenue
    from orders
    where not is_cancelled
    group by 1
),
totals as (
    select m.*, coalesce(a.orders, 0) as orders, coalesce(a.net_revenue, 0) as net_revenue
    from measures as m
    left join all_orders as a on m.month = a.month
),
kpis (kpi, numerator, denominator) as (
    values
        ('purchasing_customers', 'purchasing_customers', null),
        ('new_customers', 'new_customers', null),
        ('active_customers', 'active_customers', null),
        ('orders', 'orders', null),
        ('net_revenue', 'net_revenue', null),
        ('aov', 'net_revenue', 'orders'),
        ('repurchase_rate', 'repurchasing_customers', 'ordered_by_start'),
        ('returning_customer_rate', 'returning_customers', 'purchasing_customers'),
        ('churn_rate', 'churned_customers', 'active_at_start'),
        ('dormant_reactivation_rate', 'reactivated_customers', 'dormant_at_start'),
        ('vip_customers', 'vip_customers', null)
),
measures_long as (
    -- every measure of a month as (name, value): the KPIs pick their numerator and
    -- denominator by name
    unpivot (select * replace (cast(net_revenue as double) as net_revenue) from totals)
    on columns(* exclude (month)) into name measure value amount
),
joined as (
    select
        t.month,
        k.kpi,
        k.denominator is null as is_count,
        cast(n.amount as double) as numerator,
        cast(d.amount as double) as denominator
    from kpis as k
    inner join measures_long as n on n.measure = k.numerator
    inner join (select distinct month from totals) as t on n.month = t.month
    left join measures_long as d on d.measure = k.denominator and d.month = t.month
)
select
    month,
    kpi,
    case
        when is_count then numerator
        else numerator / nullif(denominator, 0)
    end as value,
    numerator,
    denominator
from joined;
