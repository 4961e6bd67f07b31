-- Every raw row's identifiers (one row per raw row and identifier), normalised exactly as
-- staging and identity resolution normalise them: the erasure of a person
-- (pipelines/privacy, `crm forget`) finds and removes the raw rows that carry any of the
-- person's identifiers with it, also in files delivered again later. No as-of filter:
-- every row of the raw tables, whatever its date. A view: it stores nothing.
--
-- Identifier types and values are those of int_identity_identifiers:
--   account  <source_system>:<customer_ref>    social  the platform account id
--   phone    E.164                              email   normalised e-mail
--   unionid  WeChat union id

with

customers as (
    select
        _source_file,
        _source_line,
        _delivery_date,
        _loaded_at,
        {{ clean_text('source_system') }} || ':' || {{ clean_text('customer_ref') }} as id_account,
        {{ normalize_phone('phone') }} as id_phone,
        {{ normalize_email('email') }} as id_email,
        {{ clean_text('unionid') }} as id_unionid
    from {{ source('raw', 'customers') }}
),

order_lines as (
    select
        _source_file,
        _source_line,
        _delivery_date,
        _loaded_at,
        coalesce({{ clean_text('source_system') }}, _source_name) || ':' || {{ clean_text('customer_ref') }}
            as id_account,
        {{ normalize_phone('buyer_phone') }} as id_phone,
        {{ normalize_email('buyer_email') }} as id_email
    from {{ source('raw', 'orders') }}
),

service_events as (
    select
        _source_file,
        _source_line,
        _delivery_date,
        _loaded_at,
        {{ customer_ref_system('_source_name') }} || ':' || {{ clean_text('customer_ref') }} as id_account,
        {{ normalize_phone('phone') }} as id_phone,
        {{ normalize_email('email') }} as id_email,
        {{ regex_replace_all(
            clean_text('social_account_id'), "'^(wechat|weibo|douyin|xiaohongshu|mini_program):'", "''"
        ) }} as id_social
    from {{ source('raw', 'service_events') }}
),

social_interactions as (
    select
        _source_file,
        _source_line,
        _delivery_date,
        _loaded_at,
        {{ clean_text('account_id') }} as id_social,
        {{ clean_text('unionid') }} as id_unionid,
        {{ normalize_phone('phone') }} as id_phone
    from {{ source('raw', 'social_interactions') }}
),

{%- set parts = [
        ('customers', 'customers', 'account'),
        ('customers', 'customers', 'phone'),
        ('customers', 'customers', 'email'),
        ('customers', 'customers', 'unionid'),
        ('order_lines', 'orders', 'account'),
        ('order_lines', 'orders', 'phone'),
        ('order_lines', 'orders', 'email'),
        ('service_events', 'service_events', 'account'),
        ('service_events', 'service_events', 'phone'),
        ('service_events', 'service_events', 'email'),
        ('service_events', 'service_events', 'social'),
        ('social_interactions', 'social_interactions', 'social'),
        ('social_interactions', 'social_interactions', 'unionid'),
        ('social_interactions', 'social_interactions', 'phone')
] %}

unpivoted as (
    {%- for relation, entity, identifier_type in parts %}
    select
        '{{ entity }}' as entity,
        _source_file,
        _source_line,
        _delivery_date,
        _loaded_at,
        '{{ identifier_type }}' as identifier_type,
        id_{{ identifier_type }} as identifier_value
    from {{ relation }}
    where id_{{ identifier_type }} is not null
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
)

select
    {{ hash_key("entity || '|' || _source_file || '|' || cast(_source_line as string) || '|' || identifier_type") }}
        as raw_row_identifier_id,
    *
from unpivoted
