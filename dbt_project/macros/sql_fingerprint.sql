{#- The fingerprint of the SQL a model's build runs, computed from the source text: when it
    differs from the one a build recorded, the next build of an incremental model is whole
    (macros/build_records.sql, incremental_staging.sql, staged_keys.sql). Nothing is bumped
    by hand.

    It is the MD5 of
    - the model file's checksum (its SQL and config);
    - the text of every macro of this project the build can run: those named as a call
      (`name(`) in the model file or in its pre- and post-hooks (dbt_project.yml's
      included), then, transitively, those each of these calls (the calls dbt finds in a
      macro's text, `depends_on.macros`, with adapter.dispatch resolved to the engine's
      implementation). A name in a comment may add a macro the build does not run: an edit
      of it then makes one build whole for nothing, never the reverse;
    - dbt's minor version (1.11), standing for dbt's own macros (is_incremental, the
      incremental strategies), which are not hashed: their text changes with every dbt
      release, patch releases keep what they compute, and the project requires one minor
      version (require-dbt-version). The first build after a minor upgrade is whole.

    The model's own `depends_on.macros` is not used: dbt records there only the calls it
    saw while rendering, so the list differs between parsing and the model's hooks (a call
    under `is_incremental()`), while the fingerprint must be the same wherever a build
    computes it. Settings (vars) and loaded seeds are not here: each model's fingerprint
    adds those it reads.

    `node`: a node of `graph` (another model whose SQL this model's rows depend on); this
    model when none. -#}
{% macro sql_fingerprint(node=none) -%}
    {%- set node = node if node is not none else model -%}
    {%- set project_macros = context[project_name] -%}
    {%- set prefix = 'macro.' ~ project_name ~ '.' -%}
    {%- set texts = [node.raw_code] -%}
    {%- for hook in node.config.get('pre-hook', []) + node.config.get('post-hook', []) -%}
        {%- do texts.append(hook.sql) -%}
    {%- endfor -%}
    {%- set names = [] -%}
    {%- for name in modules.re.findall('([A-Za-z_][A-Za-z0-9_]*)\\s*\\(', texts | join('\n')) -%}
        {%- if name in project_macros and name not in names -%}
            {%- do names.append(name) -%}
        {%- endif -%}
    {%- endfor -%}
    {#- breadth first: the loop also visits the names appended while it runs -#}
    {%- for name in names -%}
        {%- for unique_id in project_macros[name].macro.depends_on.macros if unique_id.startswith(prefix) -%}
            {%- set called = unique_id[prefix | length:] -%}
            {%- if called in project_macros and called not in names -%}
                {%- do names.append(called) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set parts = [node.checksum.checksum, 'dbt ' ~ (dbt_version.split('.')[:2] | join('.'))] -%}
    {%- for name in names | sort -%}
        {%- do parts.append(name ~ ' ' ~ local_md5(project_macros[name].macro.macro_sql)) -%}
    {%- endfor -%}
    {{ return(local_md5(parts | join('|'))) }}
{%- endmacro %}
