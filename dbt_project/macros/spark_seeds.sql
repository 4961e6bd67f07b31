{#- dbt-spark's `method: session` pastes seed values into the INSERT without escaping, so
    a value with a quote ("Can't Lose Them") breaks the statement. Here every value is a
    literal that cannot break: text as its UTF-8 bytes in hex (a SELECT per row, as
    VALUES only takes constants). -#}
{% macro spark__load_csv_rows(model, agate_table) %}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set statements = [] -%}
    {%- for chunk in agate_table.rows | batch(get_batch_size()) -%}
        {%- set sql -%}
            insert into {{ this.render() }}
            {% for row in chunk -%}
                select {% for value in row -%}
                    {%- set name = agate_table.column_names[loop.index0] -%}
                    {%- set type = column_override.get(name, adapter.convert_type(agate_table, loop.index0)) -%}
                    {%- if value is none -%}
                        cast(null as {{ type }})
                    {%- else -%}
                        cast(decode(unhex('{{ (value | string).encode("utf-8").hex() }}'), 'UTF-8') as {{ type }})
                    {%- endif -%}
                    {{- ', ' if not loop.last -}}
                {%- endfor %}{{ ' union all' if not loop.last }}
            {% endfor -%}
        {%- endset -%}
        {%- do adapter.add_query(sql, abridge_sql_log=True) -%}
        {%- if loop.index0 == 0 -%}
            {%- do statements.append(sql) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(statements[0] if statements else '') }}
{% endmacro %}
