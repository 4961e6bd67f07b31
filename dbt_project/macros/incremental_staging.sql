{#- Incremental staging (docs/performance.md, docs/warehouse.md "Incremental staging").

    A staging model of a raw table keeps one row per key: the row of the latest delivery
    among the raw rows as of D. Rebuilt from every raw row, it repeats each night the
    normalisation (phones, e-mails) and the deduplication window of all history. On DuckDB
    it is incremental instead: a build reads only the raw rows that are new to it,

        delivered after the last build's D, or dated (business date) after it, or loaded
        after the last build (a late delivery for an old date),

    normalises them, and for the keys they carry takes the latest row among them and the
    row already staged (the latest of a set is the latest of its latest and the rest), by
    delete+insert on the key. That equals a rebuild as long as no raw row the last build
    saw has changed or gone. A build is therefore a full rebuild (every raw row as of D,
    after emptying the table) when
      - the table does not exist, or `--full-refresh` (erasures request one);
      - D is before the last build's D (a re-run of an earlier night);
      - the model's SQL or the settings it reads (business timezone, reporting currency)
        changed since the last build;
      - a delivery the last build covered was loaded again since (its rows were replaced),
        or its loads are gone (a delivery emptied and re-loaded);
      - the last build is not recorded.
    The decision and its reason are printed in the dbt log. Each build records, per model,
    its D, the load log's newest load time of the entity, the number of loads up to D
    and the model's fingerprint in
    `<model>__build_log` next to the model (same store, same transaction; one table per
    model, as the models build in parallel). On Spark the models are tables (macro
    crm_incremental_materialization): nothing here applies. -#}

{% macro staging_log_relation() -%}
    {{ return(api.Relation.create(database=this.database, schema=this.schema, identifier=this.identifier ~ '__build_log')) }}
{%- endmacro %}

{#- What a staged row depends on besides the raw row: the SQL of the model and of the
    macros it calls (sql_fingerprint: the normalisations, staging_source, which chooses the
    rows it reads) and the settings it reads (business timezone: dates; reporting
    currency). A change means a full rebuild. -#}
{% macro staging_fingerprint() -%}
    {{ return(sql_fingerprint() ~ '|' ~ var('business_timezone') ~ '|' ~ var('reporting_currency')) }}
{%- endmacro %}

{% macro staging_entity() -%}
    {{ return(this.identifier | replace('stg_raw__', '')) }}
{%- endmacro %}

{#- The plan of this build of a staging model: {'incremental': bool, 'reason': text,
    'last_as_of': 'YYYY-MM-DD', 'loaded_through': timestamp text or none}. -#}
{% macro staging_plan() -%}
    {%- set plan = {'incremental': false, 'reason': 'first build', 'last_as_of': none, 'loaded_through': none} -%}
    {%- if not execute or model.resource_type == 'unit_test' -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- if not is_incremental() -%}
        {%- do plan.update({'reason': 'full refresh' if flags.FULL_REFRESH else 'first build'}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set entity = staging_entity() -%}
    {%- if adapter.get_relation(this.database, this.schema, this.identifier ~ '__build_log') is none -%}
        {%- do plan.update({'reason': 'no recorded build'}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set last = run_query(
        "select cast(as_of_date as string), cast(loaded_through as string), model_checksum, covered_loads from "
        ~ staging_log_relation() ~ " where model = '" ~ this.identifier ~ "'"
    ) -%}
    {%- if last.rows | length == 0 -%}
        {%- do plan.update({'reason': 'no recorded build'}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- set last_as_of, loaded_through, checksum, covered = last.rows[0][0], last.rows[0][1], last.rows[0][2], last.rows[0][3] -%}
    {%- if as_of_date_string() < last_as_of -%}
        {%- do plan.update({'reason': 'D ' ~ as_of_date_string() ~ ' is before the last build\'s D ' ~ last_as_of}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- if checksum != staging_fingerprint() -%}
        {%- do plan.update({'reason': 'the model, the macros it calls or its settings changed since the last build'}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {#- the loads of the deliveries the last build covered: none new, none gone -#}
    {%- set loads = run_query(
        "select cast(min(_delivery_date) filter (where " ~ newer_than(loaded_through) ~ ") as string),"
        ~ " count(*) filter (where " ~ newer_than(loaded_through) ~ "),"
        ~ " count(*) filter (where not (" ~ newer_than(loaded_through) ~ "))"
        ~ " from " ~ raw_relation('load_log')
        ~ " where entity = '" ~ entity ~ "' and _delivery_date <= cast('" ~ last_as_of ~ "' as date)"
    ) -%}
    {%- if loads.rows[0][1] > 0 -%}
        {%- do plan.update({'reason': 'delivery ' ~ loads.rows[0][0] ~ ' (covered by the last build) was loaded again'}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- if loads.rows[0][2] != covered -%}
        {%- do plan.update({'reason': 'loads the last build covered are gone (' ~ covered ~ ' then, ' ~ loads.rows[0][2] ~ ' now)'}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- do plan.update({
        'incremental': true,
        'reason': 'rows new since the build as of ' ~ last_as_of,
        'last_as_of': last_as_of,
        'loaded_through': loaded_through,
    }) -%}
    {{ return(plan) }}
{%- endmacro %}

{#- `_loaded_at` after the recorded time (every load when none was recorded). -#}
{% macro newer_than(loaded_through) -%}
    {{ return("_loaded_at > cast('" ~ loaded_through ~ "' as timestamp)" if loaded_through is not none else "_loaded_at is not null") }}
{%- endmacro %}

{#- The raw rows as of D (delivered by D, dated by D) that are new to this build: all of
    them on a full rebuild; on an incremental one, those delivered after the last build's
    D, or dated (business date) after it, or loaded after the last build. The three are
    written as one select each, disjoint, so that each condition is a plain range on one
    column: DuckDB skips the row groups outside it (the raw tables grow by delivery and
    load), where one OR of the three made it read and convert every raw row (large night:
    2.3 -> 0.5 s for the interactions' source rows). -#}
{% macro staging_source(plan, relation, timestamp_column) -%}
    {%- set as_of = as_of_date() -%}
    {%- set as_of_rows -%}
        _delivery_date <= {{ as_of }}
        and {{ to_business_date(timestamp_column) }} <= {{ as_of }}
    {%- endset -%}
    {%- if not plan.incremental -%}
        select * from {{ relation }}
        where
            {{ as_of_rows }}
    {%- else -%}
        {%- set last = "cast('" ~ plan.last_as_of ~ "' as date)" -%}
        {%- set last_day_end = business_day_end_utc(last) -%}
        select * from {{ relation }}
        where
            {{ as_of_rows }}
            and _delivery_date > {{ last }}
        union all
        select * from {{ relation }}
        where
            {{ as_of_rows }}
            and _delivery_date <= {{ last }}
            and {{ timestamp_column }} >= {{ last_day_end }}
        union all
        select * from {{ relation }}
        where
            {{ as_of_rows }}
            and _delivery_date <= {{ last }}
            and {{ timestamp_column }} < {{ last_day_end }}
            and {{ newer_than(plan.loaded_through) }}
    {%- endif -%}
{%- endmacro %}

{#- The rows to deduplicate: the new rows (CTE `new_rows`) and, on an incremental build,
    the rows already staged under the same keys. -#}
{% macro staging_candidates(plan, new_rows, key_column) -%}
    select * from {{ new_rows }}
    {%- if plan.incremental %}
    union all by name
    select * from {{ this }}
    where {{ key_column }} in (select {{ key_column }} from {{ new_rows }})
    {%- endif -%}
{%- endmacro %}

{#- pre-hook: creates the log; a full rebuild on an existing table starts from an empty
    table (the delete+insert then inserts every key). Logs the decision. -#}
{% macro staging_prepare() -%}
    {{ return(adapter.dispatch('staging_prepare', 'crm_warehouse')()) }}
{%- endmacro %}

{% macro spark__staging_prepare() -%}
{%- endmacro %}

{% macro default__staging_prepare() -%}
    {%- if execute -%}
        {%- set plan = staging_plan() -%}
        {{ log(this.identifier ~ ': ' ~ ('incremental' if plan.incremental else 'full rebuild') ~ ' (' ~ plan.reason ~ ')', info=true) }}
        create schema if not exists {{ this.database }}.{{ this.schema }};
        create table if not exists {{ staging_log_relation() }} (
            model string,
            as_of_date date,
            loaded_through timestamp,
            model_checksum string,
            covered_loads bigint,
            rebuilt_at timestamp
        );
        alter table {{ staging_log_relation() }} add column if not exists rebuilt_at timestamp;
        {%- if not plan.incremental %}
        update {{ staging_log_relation() }} set rebuilt_at = null where model = '{{ this.identifier }}';
        {%- endif -%}
        {%- if is_incremental() and not plan.incremental %}
        delete from {{ this }};
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- post-hook: record this build (its D, the newest load of the entity it saw, the
    model's checksum) and when the table was last rebuilt whole (the pre-hook cleared it
    on a rebuild; models reading the staged rows incrementally, like
    int_identity_identifiers, compare it). -#}
{% macro record_staging_build() -%}
    {{ return(adapter.dispatch('record_staging_build', 'crm_warehouse')()) }}
{%- endmacro %}

{% macro spark__record_staging_build() -%}
{%- endmacro %}

{% macro default__record_staging_build() -%}
    create or replace temporary table {{ this.identifier }}__recorded as
    select
        '{{ this.identifier }}' as model,
        {{ as_of_date() }} as as_of_date,
        max(_loaded_at) as loaded_through,
        '{{ staging_fingerprint() }}' as model_checksum,
        count(*) filter (where _delivery_date <= {{ as_of_date() }}) as covered_loads,
        coalesce(
            (select max(built.rebuilt_at) from {{ staging_log_relation() }} as built
             where built.model = '{{ this.identifier }}'),
            cast(current_timestamp as timestamp)
        ) as rebuilt_at
    from {{ raw_relation('load_log') }}
    where entity = '{{ staging_entity() }}';
    delete from {{ staging_log_relation() }} where model = '{{ this.identifier }}';
    insert into {{ staging_log_relation() }} by name select * from {{ this.identifier }}__recorded;
    drop table {{ this.identifier }}__recorded
{%- endmacro %}
