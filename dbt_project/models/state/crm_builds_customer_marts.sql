-- The builds of the second dbt step of the night (the marts downstream of the CLV scores)
-- that later builds read: a row per build of each model below selected in the invocation
-- (macro build_record_rows). A child of them all, so it is built after them and their data
-- tests, and skipped when one failed.
{{ build_record_rows([
    'fct_kpi_monthly',
    'fct_customer_segments_monthly',
    'fct_segment_transitions',
]) }}
