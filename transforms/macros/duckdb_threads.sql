-- DuckDB's threads for this invocation, when the runner names them (B12LAB_DUCKDB_THREADS): a build whose model
-- ran out of memory on every core is run again on one thread (b12lab/publish/dbt_build.py). Unset (any other
-- invocation, and dbt run by hand), DuckDB keeps its default: every core.
{% macro set_duckdb_threads() %}
    {%- set threads = env_var('B12LAB_DUCKDB_THREADS', '') -%}
    {%- if threads -%}
        set threads = {{ threads | int }}
    {%- else -%}
        select 1 as threads_unchanged
    {%- endif -%}
{% endmacro %}
