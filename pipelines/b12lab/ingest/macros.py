"""The SQL macros the ingest's models (b12lab/ingest/sql/) and the duplicate check call.

iso_timestamp reads ISO 8601 text only; partial_date and date_precision read a FHIR partial date (a year, a
year and month); clean_identifier is a patient id less the whitespace around it; is_oversized tells a record
too long to be one; record_file and record_position read a record's number when several small files are
read at once (below). The FHIR fields models (fhir_<resource>_fields.sql) share the reading of a resource:
parse_resource, patient_of, reference_key, concept_name and coding_code. create_macros defines them on the
connection before a file is read (create or replace: a connection that ingests file after file redefines them).
"""
from __future__ import annotations

import duckdb

# ISO 8601 dates and date-times, the only ones the exports may use (an offset is allowed and dropped: see
# docs/data-model.md). DuckDB's cast alone is looser: it reads 'epoch' as 1970-01-01 and 'infinity' as a date,
# and ignores what follows a time ('9:00 PM' is 09:00, '09:00 garbage' is 09:00), so text is matched first.
_ISO_TIMESTAMP_MACRO = r"""
create or replace temp macro iso_timestamp(text) as try_cast(
    case when regexp_full_match(
        text,
        '[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([T ][0-9]{1,2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?\s?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?'
    ) then text end as timestamp)
"""

# FHIR dates may be partial: a year (2019) or a year and month (2019-07). Read as the first day of the period
# they name, with the precision ('year', 'month', 'day') kept beside the date; anything else is left as it is
# for iso_timestamp to judge.
_PARTIAL_DATE_MACROS = (
    r"""
create or replace temp macro partial_date(text) as case
    when regexp_full_match(trim(text), '[0-9]{4}') then trim(text) || '-01-01'
    when regexp_full_match(trim(text), '[0-9]{4}-[0-9]{2}') then trim(text) || '-01'
    else text
end
""",
    r"""
create or replace temp macro date_precision(text) as case
    when nullif(trim(text), '') is null then null
    when regexp_full_match(trim(text), '[0-9]{4}') then 'year'
    when regexp_full_match(trim(text), '[0-9]{4}-[0-9]{2}') then 'month'
    else 'day'
end
""",
)

# A patient id as the export wrote it, less the whitespace around it (tabs, line breaks and no-break spaces
# too, which trim() keeps); spaces inside and leading zeros are part of the identifier. Empty is null. One
# definition for the row models and for the duplicate check, which must match ids exactly as they do.
_CLEAN_IDENTIFIER_MACRO = r"""
create or replace temp macro clean_identifier(text) as nullif(
    regexp_replace(text, '^[\s\p{Z}\x{0b}\x{1c}-\x{1f}\x{85}]+|[\s\p{Z}\x{0b}\x{1c}-\x{1f}\x{85}]+$', '', 'g'), '')
"""


# No lab or registry record is 64 KiB long: such a record is a blob or a runaway field, not to be stored in the
# lake (oversized_row). `raw` is the record's fields joined back into a line.
_OVERSIZED_MACRO = r"""
create or replace temp macro is_oversized(raw) as length(raw) > 65536
"""

# A task that reads several small FHIR Bundles of one resource type at once (b12lab/ingest/batched_ingest.py)
# numbers the record at position p of its i-th file i * 2^32 + p: record_file is i (0 for a file read on its
# own), record_position is p (the record's own number). A rule about "the same file" (the registry kinds'
# duplicates) partitions by record_file.
_RECORD_NUMBER_MACROS = (
    "create or replace temp macro record_file(source_row) as source_row // 4294967296",
    "create or replace temp macro record_position(source_row) as source_row % 4294967296",
)

# How every FHIR fields model reads a resource: parsed once into the subset of it that the model uses (a JSON
# structure, given as a literal); a line that is not JSON parses as null, and a value of another JSON type than
# declared reads as null (a number declared VARCHAR reads as its text).
_FHIR_MACROS = (
    r"""
create or replace temp macro parse_resource(line, structure) as
    case when json_valid(line) then from_json(line, structure) end
""",
    # The patient a subject reference names: Patient/<id>, relative or absolute, a version (/_history/) ignored.
    r"""
create or replace temp macro patient_of(reference) as
    regexp_extract(reference, '^(?:.*/)?Patient/([^/]+)(?:/_history/[^/]*)?$', 1)
""",
    # The Type/id key of fhir_references that a reference to a resource of that type names (relative or
    # absolute, a version ignored): how a record finds the Medication or Organization it references.
    r"""
create or replace temp macro reference_key(reference, resource_type) as
    regexp_extract(reference, '(' || resource_type || '/[^/]+)(?:/_history/[^/]*)?$', 1)
""",
    # A CodeableConcept's name: its text, else its first coding's display; '' when it has neither.
    r"""
create or replace temp macro concept_name(concept) as
    coalesce(nullif(concept.text, ''), concept.coding[1].display, '')
""",
    # The code of a CodeableConcept's first coding in the given system (LOINC, ATC), in any position.
    r"""
create or replace temp macro coding_code(concept, code_system) as
    list_filter(concept.coding, lambda c: c.system = code_system)[1].code
""",
)


def create_macros(con: duckdb.DuckDBPyConnection) -> None:
    """The macros on the connection, for the models of the file about to be read."""
    con.execute(_ISO_TIMESTAMP_MACRO)
    con.execute(_CLEAN_IDENTIFIER_MACRO)
    con.execute(_OVERSIZED_MACRO)
    for macro in (*_PARTIAL_DATE_MACROS, *_FHIR_MACROS, *_RECORD_NUMBER_MACROS):
        con.execute(macro)
