{#- Email: trimmed, lower case; NULL unless it looks like local@domain.tld
    (no spaces, one '@', a dot in the domain, a 2+ letter top-level domain). -#}
{% macro normalize_email(column) -%}
    case
        when {{ regex_matches(
            "lower(trim(cast(" ~ column ~ " as string)))",
            "'^[a-z0-9._%+\\-]+@[a-z0-9\\-]+(\\.[a-z0-9\\-]+)*\\.[a-z]{2,}$'"
        ) }}
            then lower(trim(cast({{ column }} as string)))
    end
{%- endmacro %}
