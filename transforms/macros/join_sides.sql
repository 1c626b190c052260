-- The side of each join DuckDB builds its hash table on: in a patient-level model (the incremental models,
-- which a bucket of patients builds within its memory limit), the side the SQL names (`big left join small`,
-- as every model writes it); in every other model, DuckDB's choice. A pre-hook of every model (dbt_project.yml),
-- for the connection the model runs on.
--
-- DuckDB swaps a join's sides when it estimates the named build side to be the larger (its optimizer
-- build_side_probe_side). For the CTEs a model reads twice or more it estimates wildly (90 trillion rows for
-- 241,000), and int_status_on_date then built its table on the 241,000 evaluation dates: out of memory at a
-- 64 MB limit for a bucket of 10,000 patients, where 48 MB sufficed with the sides as written. With the sides
-- as written in every patient-level model a bucket of 20,000 patients (a 61 MB file once built) builds
-- within 56 MB; over the whole project that choice cost about 12 % of a full build.
{% macro join_sides() -%}
    {%- if model.config.materialized == 'incremental' -%}
        set disabled_optimizers = 'build_side_probe_side'
    {%- else -%}
        reset disabled_optimizers
    {%- endif -%}
{%- endmacro %}
