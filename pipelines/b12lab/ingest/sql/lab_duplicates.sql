-- lab_duplicates: the later copies of a lab record within one read, dropped as duplicates.
--
-- Grain: an update of parsed_rows (lab_rows' result), run straight after it. A record is an exact duplicate
-- when an earlier record of the same read (a lower source_row: earlier in the file, or in an earlier file of
-- a task that reads several small Bundles at once) has the same patient, analyte, collection time,
-- accession, status, comparator and value (nulls equal). Only records that lab_rows gave no reason of their
-- own take part (accepted, or dropped as a copy of a result already in the lake: both passed every check);
-- the first of each key keeps its outcome, every later one becomes dropped, reason duplicate.
-- Why a statement of its own: only the few records whose key another shares can be a copy, and they are found
-- by an aggregate over the key columns of the stored rows. Ranking every record inside lab_rows sorted the
-- whole file with every column: 34 of the 38 s of a 5M-row lab file's row model, spilling 3 GB.

with candidates as (
    select
        source_row,
        patient_id,
        analyte,
        collected_at,
        accession,
        status,
        comparator,
        value_si,
        value_text
    from parsed_rows
    where reason is null or reason = 'duplicate'
),

repeated_keys as (
    select candidates.* exclude (source_row), min(candidates.source_row) as first_row
    from candidates
    group by all
    having count(*) > 1
),

later_copies as (
    select candidates.source_row
    from candidates
    inner join repeated_keys
        on repeated_keys.patient_id = candidates.patient_id
        and repeated_keys.analyte = candidates.analyte
        and repeated_keys.collected_at = candidates.collected_at
        and repeated_keys.accession is not distinct from candidates.accession
        and repeated_keys.status = candidates.status
        and repeated_keys.comparator is not distinct from candidates.comparator
        and repeated_keys.value_si is not distinct from candidates.value_si
        and repeated_keys.value_text is not distinct from candidates.value_text
    where candidates.source_row > repeated_keys.first_row
)

update parsed_rows
set outcome = 'dropped', reason = 'duplicate'
where source_row in (select source_row from later_copies)
