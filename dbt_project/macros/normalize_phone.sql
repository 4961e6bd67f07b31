{#- Phone numbers to E.164 with default country CN (+86); NULL when not a plausible number.

    Accepted (all give +8613800138000): '138 0013 8000', '+86-138-0013-8000',
    '8613800138000', '0086 138 0013 8000', '(+86) 13800138000'.
    CN landlines with trunk 0: '010-12345678' -> +861012345678.
    Other countries need an explicit '+' or '00' prefix: '+1 415 555 0123' -> +14155550123.
    Rules, on the digits left after removing spaces, dashes, dots and brackets:
      1. '+' or '00' prefix: international. Country 86 is validated as a CN number
         (mobile 1[3-9]xxxxxxxxx, or a landline: area code 10 / 2x / [3-9]xx + subscriber); other countries must
         have 8-15 digits in all (E.164 maximum).
      2. '86' + a CN mobile number (13 digits): +86.
      3. '0' + landline (area code without trunk 0 + subscriber): +86.
      4. a CN mobile number (11 digits, 1[3-9]...): +86.
      5. anything else: NULL. -#}
{% macro normalize_phone(column) -%}
    {%- set cleaned = regex_replace_all("trim(cast(" ~ column ~ " as string))", "'[\\s\\-\\.\\(\\)/]'", "''") -%}
    {%- set international = "regexp_extract(" ~ cleaned ~ ", '^(?:\\+|00)([0-9]+)$', 1)" -%}
    {#- CN national numbers: mobile 1[3-9] + 9 digits; landline area code 10 or 2x + 8 digits,
        or a 3-digit area code [3-9]xx + 7-8 digits. -#}
    {%- set cn_landline = "10[0-9]{8}|2[0-9]{9}|[3-9][0-9]{9,10}" -%}
    {%- set cn_national = "'^(1[3-9][0-9]{9}|" ~ cn_landline ~ ")$'" -%}
    case
        when nullif({{ international }}, '') is not null
            then
                case
                    when {{ international }} like '86%'
                        and {{ regex_matches('substr(' ~ international ~ ', 3)', cn_national) }}
                        then '+' || {{ international }}
                    when {{ international }} not like '86%'
                        and {{ regex_matches(international, "'^[1-9][0-9]{7,14}$'") }}
                        then '+' || {{ international }}
                end
        when {{ regex_matches(cleaned, "'^861[3-9][0-9]{9}$'") }}
            then '+' || {{ cleaned }}
        when {{ regex_matches(cleaned, "'^0(" ~ cn_landline ~ ")$'") }}
            then '+86' || substr({{ cleaned }}, 2)
        when {{ regex_matches(cleaned, "'^1[3-9][0-9]{9}$'") }}
            then '+86' || {{ cleaned }}
    end
{%- endmacro %}
