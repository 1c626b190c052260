-- grain: one line of the row accounting, by section: `suspected_unmapped`, an out-of-scope code system, code and
-- the analyte its test name suggests (unmapped_codes.suggested_analyte; all files); `missing_analyte`, an analyte
-- accepted on earlier runs of which this run's lab files accepted none; `accounting`, a source file (a file name;
-- null: all files) and field; `outcome`, an outcome other than accepted and its reason (all files); `quarantine`,
-- a source file, the lake table its row was meant for and the quarantine reason.
-- rule: what ingest did with every input row, counted for the run this publication belongs to (this_run) and
-- for every run the lake holds (all_runs). The publication's run is the latest started run of `runs`: its own
-- record is added to runs before the models are built, and every run the lake recorded started before it (a
-- crashed run, recorded by a later one, has no start). Accounting fields: files (times the file was ingested),
-- rows_read, rows_accepted, rows_quarantined, rows_dropped (ingested_files), rows_out_of_scope (dropped as
-- out_of_scope, a code that maps to no analyte: ingest_outcomes), rows_in_scope = rows_read - rows_out_of_scope
-- and rows_dropped_in_scope = rows_dropped - rows_out_of_scope; out of scope is not damage, so the report reads
-- the quarantine against the rows in scope. Every field has an all-files row, 0 on an empty lake.
-- suspected_unmapped counts the code's rows dropped as out_of_scope (this run, all runs); missing_analyte is
-- written only when this run ingested lab files that had rows, with this_run 0 and all_runs the analyte's rows
-- accepted by earlier runs, and source_file the file of the latest earlier run that brought it (run ids sort by
-- start). Both come first, here and in the report's data-quality section.
-- `unreadable_field`: a source file, lake table and optional field given but unreadable (unreadable_fields):
-- accepted rows stored without it. `not_counted`: accepted lab results stored but not counted, by status
-- (reason status_preliminary, status_unknown: FHIR's unknown), over all files.
with

publication_run as (
    select runs.run_id
    from {{ source('lake', 'runs') }} as runs
    where runs.started_at is not null
    order by runs.started_at desc, runs.run_id desc
    limit 1
),

fields as (
    select field
    from (values
        ('files'), ('rows_read'), ('rows_out_of_scope'), ('rows_in_scope'), ('rows_accepted'),
        ('rows_quarantined'), ('rows_dropped_in_scope'), ('rows_dropped')
    ) as listed (field)
),

files as (
    select
        ingested_files.source_file,
        ingested_files.kind,
        coalesce(ingested_files.ingest_run = (select publication_run.run_id from publication_run), false)
            as in_this_run,
        ingested_files.rows_read,
        ingested_files.rows_accepted,
        ingested_files.rows_quarantined,
        ingested_files.rows_dropped
    from {{ source('lake', 'ingested_files') }} as ingested_files
),

out_of_scope as (
    select
        ingest_outcomes.source_file,
        coalesce(ingest_outcomes.ingest_run = (select publication_run.run_id from publication_run), false)
            as in_this_run,
        ingest_outcomes.rows
    from {{ source('lake', 'ingest_outcomes') }} as ingest_outcomes
    where ingest_outcomes.outcome = 'dropped' and ingest_outcomes.reason = 'out_of_scope'
),

accounting_terms as (
    -- each field as a sum of terms: a file's own counts, and its out-of-scope rows taken out of the in-scope ones
    select source_file, in_this_run, 'files' as field, 1 as term from files
    union all select source_file, in_this_run, 'rows_read', rows_read from files
    union all select source_file, in_this_run, 'rows_accepted', rows_accepted from files
    union all select source_file, in_this_run, 'rows_quarantined', rows_quarantined from files
    union all select source_file, in_this_run, 'rows_dropped', rows_dropped from files
    union all select source_file, in_this_run, 'rows_in_scope', rows_read from files
    union all select source_file, in_this_run, 'rows_dropped_in_scope', rows_dropped from files
    union all select source_file, in_this_run, 'rows_out_of_scope', rows from out_of_scope
    union all select source_file, in_this_run, 'rows_in_scope', -rows from out_of_scope
    union all select source_file, in_this_run, 'rows_dropped_in_scope', -rows from out_of_scope
),

file_kinds as (
    select files.source_file, max(files.kind) as kind
    from files
    group by files.source_file
),

file_accounting as (
    -- every field of every file, 0 when it has no term (a file with no row out of scope)
    select
        'accounting' as section,
        file_kinds.source_file,
        file_kinds.kind,
        fields.field,
        coalesce(sum(accounting_terms.term) filter (where accounting_terms.in_this_run), 0) as this_run,
        coalesce(sum(accounting_terms.term), 0) as all_runs
    from file_kinds
    cross join fields
    left join accounting_terms
        on accounting_terms.source_file = file_kinds.source_file
       and accounting_terms.field = fields.field
    group by file_kinds.source_file, file_kinds.kind, fields.field
),

all_files_accounting as (
    select
        'accounting' as section,
        null as source_file,
        null as kind,
        fields.field,
        coalesce(sum(accounting_terms.term) filter (where accounting_terms.in_this_run), 0) as this_run,
        coalesce(sum(accounting_terms.term), 0) as all_runs
    from fields
    left join accounting_terms on accounting_terms.field = fields.field
    group by fields.field
),

outcomes as (
    select
        'outcome' as section,
        ingest_outcomes.outcome,
        ingest_outcomes.reason,
        coalesce(sum(ingest_outcomes.rows) filter (
            where ingest_outcomes.ingest_run = (select publication_run.run_id from publication_run)
        ), 0) as this_run,
        sum(ingest_outcomes.rows) as all_runs
    from {{ source('lake', 'ingest_outcomes') }} as ingest_outcomes
    where ingest_outcomes.outcome <> 'accepted'
    group by ingest_outcomes.outcome, ingest_outcomes.reason
),

quarantined as (
    select
        'quarantine' as section,
        quarantine.source_file,
        quarantine.table_name,
        quarantine.reason,
        count(*) filter (where quarantine.ingest_run = (select publication_run.run_id from publication_run))
            as this_run,
        count(*) as all_runs
    from {{ source('lake', 'quarantine') }} as quarantine
    group by quarantine.source_file, quarantine.table_name, quarantine.reason
),

suspected_unmapped as (
    select
        'suspected_unmapped' as section,
        unmapped_codes.code_system,
        unmapped_codes.code,
        min(unmapped_codes.display) as display,
        unmapped_codes.suggested_analyte as analyte,
        coalesce(sum(unmapped_codes.rows) filter (
            where unmapped_codes.ingest_run = (select publication_run.run_id from publication_run)
        ), 0) as this_run,
        sum(unmapped_codes.rows) as all_runs
    from {{ source('lake', 'unmapped_codes') }} as unmapped_codes
    where unmapped_codes.suggested_analyte is not null
    group by unmapped_codes.code_system, unmapped_codes.code, unmapped_codes.suggested_analyte
),

this_run_lab_rows as (
    select coalesce(sum(files.rows_read), 0) as rows_read
    from files
    where files.in_this_run and files.kind = 'labs'
),

accepted_by_run as (
    select
        lab_results.analyte,
        lab_results.source_file,
        lab_results.ingest_run,
        coalesce(lab_results.ingest_run = (select publication_run.run_id from publication_run), false)
            as in_this_run,
        count(*) as rows
    from {{ source('lake', 'lab_results') }} as lab_results
    group by all
),

missing_analyte as (
    -- accepted before, none tonight, on a night that brought lab rows
    select
        'missing_analyte' as section,
        accepted_by_run.analyte,
        arg_max(accepted_by_run.source_file, accepted_by_run.ingest_run) as source_file,
        0 as this_run,
        sum(accepted_by_run.rows) as all_runs
    from accepted_by_run
    where not accepted_by_run.in_this_run
      and (select this_run_lab_rows.rows_read from this_run_lab_rows) > 0
      and accepted_by_run.analyte not in (
          select tonight.analyte from accepted_by_run as tonight where tonight.in_this_run
      )
    group by accepted_by_run.analyte
),

unreadable as (
    select
        'unreadable_field' as section,
        unreadable_fields.source_file,
        unreadable_fields.table_name,
        unreadable_fields.field,
        coalesce(sum(unreadable_fields.rows) filter (
            where unreadable_fields.ingest_run = (select publication_run.run_id from publication_run)
        ), 0) as this_run,
        sum(unreadable_fields.rows) as all_runs
    from {{ source('lake', 'unreadable_fields') }} as unreadable_fields
    group by unreadable_fields.source_file, unreadable_fields.table_name, unreadable_fields.field
),

not_counted as (
    -- kept but not counted by the models (stg_counted_results counts F and C only)
    select
        'not_counted' as section,
        case lab_results.status when 'P' then 'status_preliminary' when 'U' then 'status_unknown'
            else 'status_' || lower(lab_results.status) end as reason,
        count(*) filter (where lab_results.ingest_run = (select publication_run.run_id from publication_run))
            as this_run,
        count(*) as all_runs
    from {{ source('lake', 'lab_results') }} as lab_results
    where lab_results.status not in ('F', 'C')
    group by lab_results.status
),

lines as (
    select section, null as source_file, null as kind, null as field, null as outcome, null as reason,
        null as table_name, code_system, code, display, analyte, this_run, all_runs
    from suspected_unmapped
    union all
    select section, source_file, null, null, null, null, null, null, null, null, analyte, this_run, all_runs
    from missing_analyte
    union all
    select section, source_file, kind, field, null, null, null, null, null, null, null, this_run, all_runs
    from all_files_accounting
    union all
    select section, source_file, kind, field, null, null, null, null, null, null, null, this_run, all_runs
    from file_accounting
    union all
    select section, null, null, null, outcome, reason, null, null, null, null, null, this_run, all_runs
    from outcomes
    union all
    select section, source_file, null, null, null, reason, table_name, null, null, null, null, this_run, all_runs
    from quarantined
    union all
    select section, source_file, null, field, null, null, table_name, null, null, null, null, this_run, all_runs
    from unreadable
    union all
    select section, null, null, null, null, reason, 'lab_results', null, null, null, null, this_run, all_runs
    from not_counted
),

final as (
    select
        lines.section::varchar as section,
        lines.source_file::varchar as source_file,
        lines.kind::varchar as kind,
        lines.field::varchar as field,
        lines.outcome::varchar as outcome,
        lines.reason::varchar as reason,
        lines.table_name::varchar as table_name,
        lines.code_system::varchar as code_system,
        lines.code::varchar as code,
        lines.display::varchar as display,
        lines.analyte::varchar as analyte,
        lines.this_run::bigint as this_run,
        lines.all_runs::bigint as all_runs
    from lines
    order by
        -- what must not go unseen first: suspected unmapped analytes, then analytes that stopped arriving
        case lines.section when 'suspected_unmapped' then 1 when 'missing_analyte' then 2 else 3 end,
        lines.section,
        case when lines.section = 'suspected_unmapped' then -lines.this_run end,
        lines.analyte,
        lines.code,
        lines.source_file nulls first,
        lines.field,
        lines.outcome,
        lines.reason,
        lines.table_name
)

select * from final
