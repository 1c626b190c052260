-- Incremental builds, by patient (docs/incremental.md).
--
-- A patient's rows in the patient-level models depend on that patient's own records, the rules and the as-of
-- dates, never on another patient. So a build that starts from the previous night's warehouse (the models'
-- tables exist: dbt's is_incremental()) rebuilds only the patients of incremental.rebuild_patients (the
-- pipeline writes it before dbt runs: b12lab/publish/incremental.py): each patient-level model deletes their
-- rows, reads only their records, and appends their new rows. Everyone else's rows are reused; the rows of
-- the previous as-of date are carried to the new one (int_patient_validity says until when they stay true).
-- A build in an empty warehouse (`dbt build` by hand, a first night, new rules or models) is a full build of
-- every patient: these macros then change nothing.
--
-- The incremental tables are named here, not through ref() or source(): they are read only on an
-- incremental build, and a dependency dbt saw would make every unit test of a patient-level model mock them.
-- main.stg_run_as_of and main.stg_as_of_dates are upstream of every patient-level model with an as_of column,
-- so they are built when its pre-hook runs.

{% macro generate_schema_name(custom_schema_name, node) -%}
    {#- a model's `schema` config is the schema's whole name (dbt's default would prefix main_) -#}
    {{ custom_schema_name | trim if custom_schema_name is not none else target.schema }}
{%- endmacro %}


{% macro building_incrementally() -%}
    {#- dbt's is_incremental(), false where the model has no table of its own (a unit test) -#}
    {{- return(this is not none and is_incremental()) -}}
{%- endmacro %}


{% macro rebuilt_patients_only(relation) -%}
    {#- `relation`, restricted to the patients this build rebuilds when the model is built incrementally -#}
    {%- if building_incrementally() -%}
        (select * from {{ relation }} where patient_id in (select patient_id from incremental.rebuild_patients))
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}


{% macro delete_rebuilt_patients() -%}
    {#- first pre-hook of a patient-level incremental model, outside the model's transaction (before_begin):
        delete the rows of the patients rebuilt now, then checkpoint. DuckDB holds a deletion's bookkeeping in
        memory, about 8 bytes for every row of each 2048-row vector the deleted rows fall in, until a checkpoint
        writes it out; rebuilt patients are spread over every vector, so that is 8 bytes per row of the table
        (590 MB for the 73M rows of int_status_on_date at 30M lab rows), which with the model's own query went
        past the 768 MB limit. The checkpoint frees it before the model runs. Deleting twice is harmless, and a
        failed night's warehouse is never published, so nothing needs the deletion undone. -#}
    {%- if building_incrementally() -%}
        delete from {{ this }} where patient_id in (select patient_id from incremental.rebuild_patients);
        checkpoint;
    {%- endif -%}
{%- endmacro %}


{% macro forget_rebuilt_patients(run_date_only=false) -%}
    {#- pre-hook of a patient-level incremental model, in its transaction, after delete_rebuilt_patients: carry
        everyone else's rows of the previous as-of date to the new as-of date; drop the dates that left the
        trend. The carried rows' dates equal to the previous as-of (the as_of itself, an evaluation date or a
        window cut at it) become the new as-of: a carried patient has no record or rule boundary between the
        two dates (int_patient_validity), so no other date of theirs can equal it. `run_date_only`: the model
        holds the run's as-of date only (a mart), not the trend's dates. -#}
    {%- if building_incrementally() -%}
        {%- set columns = adapter.get_columns_in_relation(this) -%}
        {%- set names = columns | map(attribute='name') | list -%}
        {%- if 'as_of' in names %}
        insert into {{ this }} by name
        select
            {%- for column in columns %}
            {%- set name = this ~ '.' ~ adapter.quote(column.name) %}
            {%- if column.dtype | lower == 'date' %}
            case when {{ name }} = previous_build.as_of then run.as_of else {{ name }} end
            {%- else %}
            {{ name }}
            {%- endif %} as {{ adapter.quote(column.name) }}{{ ',' if not loop.last }}
            {%- endfor %}
        from {{ this }}
        inner join incremental.build_state as previous_build
            on {{ this }}.as_of = previous_build.as_of
        cross join main.stg_run_as_of as run
        where previous_build.as_of <> run.as_of;
        {%- if run_date_only %}
        delete from {{ this }} where as_of <> (select as_of from main.stg_run_as_of);
        {%- else %}
        delete from {{ this }} where as_of not in (select as_of from main.stg_as_of_dates);
        {%- endif %}
        {%- endif %}
    {%- endif -%}
{%- endmacro %}


{% macro create_incremental_sources() -%}
    {#- on-run-start: the incremental sources exist, empty in a warehouse never built (a full build) -#}
    create schema if not exists incremental;
    create table if not exists incremental.build_state (as_of date, as_of_dates date[], fingerprint varchar);
    create table if not exists incremental.rebuild_patients (patient_id varchar);
{%- endmacro %}


{% macro built_in_buckets_or(final) -%}
    {#- a patient-level model's rows: its own query's (`final`), or, on a night whose patients were built in
        buckets (b12lab/publish/buckets.py, docs/buckets.md), the rows the buckets built for this model, read
        from their files (attached by attach_bucket_files). Looked up as the model runs (not when dbt parses the
        project), so a build by hand, a unit test or a night with one bucket reads `final`. -#}
    {%- if execute and this is not none -%}
        {%- set attached = run_query("select database_name from duckdb_databases() "
                                     ~ "where starts_with(database_name, 'bucket_') order by database_name") -%}
        {%- if attached.rows | length > 0 -%}
            {%- set parts = [] -%}
            {%- for row in attached.rows -%}
                {%- do parts.append('select * from ' ~ row[0] ~ '.' ~ adapter.quote(this.schema) ~ '.'
                                    ~ adapter.quote(this.identifier)) -%}
            {%- endfor -%}
            {{- return('(' ~ parts | join(' union all by name ') ~ ')') -}}
        {%- endif -%}
    {%- endif -%}
    {{- return(final) -}}
{%- endmacro %}


{% macro attach_bucket_files() -%}
    {#- on-run-start: the night's bucket files, read-only, as bucket_<n>, when the pipeline listed them in
        incremental.bucket_files (b12lab/publish/buckets.py); otherwise nothing. Attached for this invocation
        only: the warehouse keeps no reference to them. -#}
    {%- if execute -%}
        {%- set listed = run_query("select count(*) from duckdb_tables() where database_name = current_database() "
                                   ~ "and schema_name = 'incremental' and table_name = 'bucket_files'") -%}
        {%- if listed.rows[0][0] > 0 -%}
            {%- for row in run_query("select bucket, path from incremental.bucket_files order by bucket").rows %}
    attach if not exists '{{ row[1] | replace("'", "''") }}' as bucket_{{ row[0] | int }} (read_only);
            {%- endfor %}
        {%- endif -%}
    {%- endif %}
    select 1 as bucket_files_attached
{%- endmacro %}
