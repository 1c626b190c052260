-- The side of each join DuckDB builds its hash table on: in a patient-level model (the incremental models,
-- which a bucket of patients builds within its memory limit), the side the SQL names (`big left join small`,
-- as every one of them writes it); in every other model, DuckDB's choice. A pre-hook of every model
-- (dbt_project.yml), for the connection the model runs on.
--
-- DuckDB swaps a join's sides when it estimates the named build side to be the larger (its optimizer
-- build_side_probe_side). For the CTEs a model reads twice or more it estimates wildly (90 trillion rows for
-- 241,000), and int_status_on_date then built its table on the 241,000 evaluation dates: out of memory at a
-- 64 MB limit for a bucket of 10,000 patients, where 48 MB sufficed with the sides as written. On an
-- incremental night it estimates the rebuilt patients' filter (`patient_id in (...)`) as badly:
-- stg_counted_results then built its table on all 11 million lab rows rather than the 28,769 rebuilt patients
-- (6.6 s against 1.6 s at 10M lab rows). With the sides as written, the SQL must name the smaller side on the
-- right: int_patient_status, which did not, built its table on every patient's 24 million rows (7.6 s against
-- 0.9 s once its join was turned round). With the sides as written in every patient-level model a bucket of
-- 20,000 patients (a 61 MB file once built) builds within 56 MB.
{% macro join_sides() -%}
    {%- if model.config.materialized == 'incremental' -%}
        set disabled_optimizers = 'build_side_probe_side'
    {%- else -%}
        reset disabled_optimizers
    {%- endif -%}
{%- endmacro %}
