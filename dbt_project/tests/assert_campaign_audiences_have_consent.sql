-- PIPL: nobody without explicit marketing consent is in a campaign audience.
select
    audiences.audience,
    audiences.customer_id
from {{ ref('rpt_campaign_audiences') }} as audiences
inner join {{ ref('dim_customers') }} as customers
    on audiences.customer_id = customers.customer_id
where not coalesce(customers.marketing_consent, false)
