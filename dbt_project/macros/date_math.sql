{#- Small date helpers behind adapter.dispatch so that a Spark target only adds spark__
    versions. -#}
{% macro add_days(date_sql, days) -%}
    {{ return(adapter.dispatch('add_days', 'crm_warehouse')(date_sql, days)) }}
{%- endmacro %}

{% macro default__add_days(date_sql, days) -%}
    cast({{ date_sql }} + cast({{ days }} as integer) as date)
{%- endmacro %}

{% macro spark__add_days(date_sql, days) -%}
    date_add({{ date_sql }}, cast({{ days }} as int))
{%- endmacro %}

{#- Whole days from `start_sql` to `end_sql` (end - start). -#}
{% macro days_between(start_sql, end_sql) -%}
    {{ return(adapter.dispatch('days_between', 'crm_warehouse')(start_sql, end_sql)) }}
{%- endmacro %}

{% macro default__days_between(start_sql, end_sql) -%}
    date_diff('day', cast({{ start_sql }} as date), cast({{ end_sql }} as date))
{%- endmacro %}

{% macro spark__days_between(start_sql, end_sql) -%}
    datediff(cast({{ end_sql }} as date), cast({{ start_sql }} as date))
{%- endmacro %}

{#- Calendar minutes (with fractions) from `start_sql` to `end_sql`, timestamps. (On Spark a
    literal such as 60.0 is a DECIMAL and would round the quotient to 6 places.) -#}
{% macro minutes_between(start_sql, end_sql) -%}
    {{ return(adapter.dispatch('minutes_between', 'crm_warehouse')(start_sql, end_sql)) }}
{%- endmacro %}

{% macro default__minutes_between(start_sql, end_sql) -%}
    (epoch({{ end_sql }}) - epoch({{ start_sql }})) / 60.0
{%- endmacro %}

{% macro spark__minutes_between(start_sql, end_sql) -%}
    cast(unix_micros({{ end_sql }}) - unix_micros({{ start_sql }}) as double) / 60000000
{%- endmacro %}

{#- Timestamp plus a number of minutes. -#}
{% macro add_minutes(ts_sql, minutes) -%}
    {{ return(adapter.dispatch('add_minutes', 'crm_warehouse')(ts_sql, minutes)) }}
{%- endmacro %}

{% macro default__add_minutes(ts_sql, minutes) -%}
    ({{ ts_sql }} + to_minutes(cast({{ minutes }} as bigint)))
{%- endmacro %}

{% macro spark__add_minutes(ts_sql, minutes) -%}
    ({{ ts_sql }} + make_interval(0, 0, 0, 0, 0, cast({{ minutes }} as int), 0))
{%- endmacro %}

{#- First day of the month of a date. -#}
{% macro month_start(date_sql) -%}
    cast(date_trunc('month', {{ date_sql }}) as date)
{%- endmacro %}

{#- Last day of the month of a date. -#}
{% macro month_end(date_sql) -%}
    {{ return(adapter.dispatch('month_end', 'crm_warehouse')(date_sql)) }}
{%- endmacro %}

{% macro default__month_end(date_sql) -%}
    last_day(cast({{ date_sql }} as date))
{%- endmacro %}

{#- A join clause that adds to each row of the FROM item one row per month (column
    `<alias>.month`, its first day) from the month of `start_sql` to the month of
    `end_sql` (date expressions that may name the FROM item's columns). -#}
{% macro month_spine_join(start_sql, end_sql, alias) -%}
    {{ return(adapter.dispatch('month_spine_join', 'crm_warehouse')(start_sql, end_sql, alias)) }}
{%- endmacro %}

{% macro default__month_spine_join(start_sql, end_sql, alias) -%}
    cross join (
        select cast(generate_series as date) as month
        from generate_series(
            cast({{ month_start(start_sql) }} as timestamp),
            cast({{ month_start(end_sql) }} as timestamp),
            interval 1 month
        )
    ) as {{ alias }}
{%- endmacro %}

{% macro spark__month_spine_join(start_sql, end_sql, alias) -%}
    lateral view explode(sequence({{ month_start(start_sql) }}, {{ month_start(end_sql) }}, interval 1 month)) {{ alias }} as month
{%- endmacro %}

{#- 'YYYY-MM' of a date. -#}
{% macro month_label(date_sql) -%}
    {{ return(adapter.dispatch('month_label', 'crm_warehouse')(date_sql)) }}
{%- endmacro %}

{% macro default__month_label(date_sql) -%}
    strftime({{ date_sql }}, '%Y-%m')
{%- endmacro %}

{% macro spark__month_label(date_sql) -%}
    date_format({{ date_sql }}, 'yyyy-MM')
{%- endmacro %}

{#- Whole calendar months from the month of `start_sql` to the month of `end_sql`
    (first-of-month dates: end - start in months). -#}
{% macro months_between(start_sql, end_sql) -%}
    {{ return(adapter.dispatch('months_between', 'crm_warehouse')(start_sql, end_sql)) }}
{%- endmacro %}

{% macro default__months_between(start_sql, end_sql) -%}
    date_diff('month', cast({{ start_sql }} as date), cast({{ end_sql }} as date))
{%- endmacro %}

{% macro spark__months_between(start_sql, end_sql) -%}
    cast(months_between(cast({{ end_sql }} as date), cast({{ start_sql }} as date)) as int)
{%- endmacro %}

{#- Monday of the ISO week of a date. -#}
{% macro week_start(date_sql) -%}
    cast(date_trunc('week', {{ date_sql }}) as date)
{%- endmacro %}

{#- 'YYYY-Www' (ISO year and week) of a date. -#}
{% macro week_label(date_sql) -%}
    {{ return(adapter.dispatch('week_label', 'crm_warehouse')(date_sql)) }}
{%- endmacro %}

{% macro default__week_label(date_sql) -%}
    strftime({{ date_sql }}, '%G-W%V')
{%- endmacro %}

{% macro spark__week_label(date_sql) -%}
    concat(
        cast(year(date_add({{ date_sql }}, 3 - pmod(dayofweek({{ date_sql }}) + 5, 7))) as string),
        '-W',
        lpad(cast(weekofyear({{ date_sql }}) as string), 2, '0')
    )
{%- endmacro %}

{#- Like month_spine_join, one row per ISO week (`<alias>.week`, its Monday) from the week
    of `start_sql` to the week of `end_sql`. -#}
{% macro week_spine_join(start_sql, end_sql, alias) -%}
    {{ return(adapter.dispatch('week_spine_join', 'crm_warehouse')(start_sql, end_sql, alias)) }}
{%- endmacro %}

{% macro default__week_spine_join(start_sql, end_sql, alias) -%}
    cross join (
        select cast(generate_series as date) as week
        from generate_series(
            cast({{ week_start(start_sql) }} as timestamp),
            cast({{ week_start(end_sql) }} as timestamp),
            interval 7 day
        )
    ) as {{ alias }}
{%- endmacro %}

{% macro spark__week_spine_join(start_sql, end_sql, alias) -%}
    lateral view explode(sequence({{ week_start(start_sql) }}, {{ week_start(end_sql) }}, interval 7 day)) {{ alias }} as week
{%- endmacro %}

{#- Like month_spine_join, one row per day (`<alias>.day`) from `start_sql` to `end_sql`
    (dates). -#}
{% macro day_spine_join(start_sql, end_sql, alias) -%}
    {{ return(adapter.dispatch('day_spine_join', 'crm_warehouse')(start_sql, end_sql, alias)) }}
{%- endmacro %}

{% macro default__day_spine_join(start_sql, end_sql, alias) -%}
    cross join (
        select cast(generate_series as date) as day
        from generate_series(
            cast({{ start_sql }} as timestamp),
            cast({{ end_sql }} as timestamp),
            interval 1 day
        )
    ) as {{ alias }}
{%- endmacro %}

{% macro spark__day_spine_join(start_sql, end_sql, alias) -%}
    lateral view explode(sequence(cast({{ start_sql }} as date), cast({{ end_sql }} as date), interval 1 day)) {{ alias }} as day
{%- endmacro %}

{#- Timestamp plus a number of minutes with fractions (to the microsecond). -#}
{% macro add_exact_minutes(ts_sql, minutes) -%}
    {{ return(adapter.dispatch('add_exact_minutes', 'crm_warehouse')(ts_sql, minutes)) }}
{%- endmacro %}

{% macro default__add_exact_minutes(ts_sql, minutes) -%}
    ({{ ts_sql }} + to_microseconds(cast(round(({{ minutes }}) * 60000000) as bigint)))
{%- endmacro %}

{% macro spark__add_exact_minutes(ts_sql, minutes) -%}
    timestamp_micros(unix_micros({{ ts_sql }}) + cast(round(({{ minutes }}) * 60000000) as bigint))
{%- endmacro %}

{#- A date plus a number of whole months (the month's last day when the day does not exist). -#}
{% macro add_months(date_sql, months) -%}
    {{ return(adapter.dispatch('add_months', 'crm_warehouse')(date_sql, months)) }}
{%- endmacro %}

{% macro default__add_months(date_sql, months) -%}
    cast(cast({{ date_sql }} as date) + to_months(cast({{ months }} as integer)) as date)
{%- endmacro %}

{% macro spark__add_months(date_sql, months) -%}
    add_months(cast({{ date_sql }} as date), cast({{ months }} as int))
{%- endmacro %}
