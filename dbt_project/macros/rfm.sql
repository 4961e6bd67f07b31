{#- metrics.md, "RFM": score = 1 + floor(rfm_score_buckets x (rank() - 1) / n), ties share
    the lowest rank, n = the scored rows (of the partition). `order_by`: the ranking order,
    e.g. 'recency_days desc' (most recent -> 5); `partition_by`: rank within each value
    (e.g. each month), none = over every row. -#}
{% macro rfm_score(order_by, partition_by=none) -%}
    {%- set over_partition = 'partition by ' ~ partition_by ~ ' ' if partition_by else '' -%}
    cast(1 + floor(
        {{ var('rfm_score_buckets') }} * (rank() over ({{ over_partition }}order by {{ order_by }}) - 1)
        / count(*) over ({{ over_partition | trim }})
    ) as integer)
{%- endmacro %}
