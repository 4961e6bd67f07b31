-- The builds of the first dbt step of the night (staging, identity, facts: everything not
-- downstream of the CLV scores) that later builds read: a row per build of each model below
-- selected in the invocation (macro build_record_rows). A child of them all, so it is built after
-- them and their data tests, and skipped when one failed.
{{ build_record_rows([
    'fct_orders',
    'fct_order_lines',
    'fct_service_tickets',
    'fct_social_interactions',
    'int_customer_months',
    'int_kpi_social_monthly',
    'fct_campaign_performance',
]) }}
