"""Bad input of every kind: a clear outcome, nothing lost.

Each damaged export of tests/data/bad/ (see its README.md; made by its generate.py) goes through the real
ingest (the `ingest` fixture: discover_exports + ingest_file), and a few through the whole nightly flow. The
large cases (a 30 MB line, 3000 one-row files, random bytes) are generated here into tmp_path.

The contract, for every case: the run completes with every record accounted for (rows_read = accepted +
quarantined + dropped, every record not accepted with a named reason), or it stops with one line naming the
file, never a patient id, and the previous publication untouched.

Decisions, each asserted below:

- A file that cannot be read at all (a truncated or corrupt gzip, a PDF or zip named labs.csv) does NOT stop
  the nightly run. Stopping would hold back every other site's results for one bad transfer, night after
  night until someone intervenes. Instead every record that could be read is quarantined as `unreadable_file`
  (rows_read counts them, 0 for a PDF; the reason is recorded in ingest_outcomes even with 0 rows), the
  one-line problem is in the file's account (run_summary.json) and printed, and the run publishes. The file
  is committed under its hash, so the same broken bytes are not retried; a re-sent, complete file has other
  bytes and is ingested the next night (its records are not duplicates of quarantined ones).
- Encoding: a file that is not valid UTF-8 is re-read line by line, each line that is not valid UTF-8 decoded
  as Latin-1 (0xB5 is the micro sign, so 'µmol/L' maps to umol/L). Per line rather than DuckDB's
  encoding='latin-1' for the whole file (DuckDB 2.0 has utf-8, utf-16 and latin-1 built in, others need the
  `encodings` extension): a file mixing UTF-8 and Latin-1 lines then keeps both right. UTF-16 with a byte
  order mark (Excel's "Unicode text") is converted.
- Delimiter: comma is the contract; a header that names every expected column with ';', tab or '|' is read
  with that delimiter. Not a guess: the header proves it.
- Numbers: a decimal comma is read only where it cannot be a thousands separator (0,35 12,5 <0,05); 1,234
  could be 1234 or 1.234 and is quarantined as unparseable_value, as is every thousands separator (1,234,567,
  1.234,5, 1 234). Values that are not > 0, not finite, or >= 1e10 in the canonical unit (above the
  solubility of every analyte) are implausible_value; NaN and inf are not numbers (unparseable_value).
- Dates: ISO 8601 only. DuckDB's own cast reads 'epoch' as 1970-01-01 and '9:00 PM' as 09:00; those, Excel
  serials and day/month orders are unparseable_date.
- Patient ids are kept exactly: only surrounding whitespace (tabs and no-break spaces included) is trimmed.
- DuckDB's CSV reader is not trusted where it was found to alter data: gzip is decompressed by Python (DuckDB
  does not check the CRC and reads a stream corrupted in the middle as garbage records); LF, CRLF and a lone
  CR each end a record (left to detection, a lone CR in a CRLF file ate the next record's first character);
  and a file with malformed quoting, which DuckDB's lenient reader reads approximately ("P00"12 as P001), is
  read by Python's csv module instead.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import time
import zlib
from datetime import date
from pathlib import Path

import duckdb
import pytest

import b12lab.ingest.csv_reader as csv_reader_module
import b12lab.ingest.file_ingest as ingest_module
from b12lab.ingest import IngestError, discover_exports, ingest_file
from b12lab.lake.lake import Lake
from b12lab.common.paths import EXPECTATIONS_DIR
from tests.helpers.exports import lab_row, write_labs
from tests.helpers.nights import flow_night

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
KNOWN_QUARANTINE = set(next(
    e["kwargs"]["value_set"] for e in json.loads((EXPECTATIONS_DIR / "expectations" / "quarantine.json").read_text())[
        "expectations"] if e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"]["column"] == "reason"))
DROP_RULES = {"cancelled", "entered_in_error", "duplicate", "refuted", "not_taken"}


def accounted(result, *, reasons: dict[int, str] | None = None, accepted: list[int] | None = None):
    """Assert the file's accounting; optionally its quarantine reasons and accepted rows. Returns the result."""
    account = result.account
    assert account.reconciles
    assert account.rows_read == account.rows_accepted + account.rows_quarantined + account.rows_dropped
    rows, quarantine = result.rows(), result.quarantine()
    assert len(rows) == account.rows_accepted and len(quarantine) == account.rows_quarantined
    assert {row["reason"] for row in quarantine} <= KNOWN_QUARANTINE
    for (outcome, reason), count in account.by_reason.items():
        assert outcome in ("accepted", "quarantined", "dropped")
        assert reason in ({""} if outcome == "accepted" else KNOWN_QUARANTINE if outcome == "quarantined"
                          else DROP_RULES)
    assert sum(account.by_reason.values()) == account.rows_read
    numbers = [row["source_row"] for row in rows] + [row["source_row"] for row in quarantine]
    assert len(set(numbers)) == len(numbers) and all(1 <= n <= account.rows_read for n in numbers)
    if reasons is not None:
        assert result.reasons() == reasons
    if accepted is not None:
        assert [row["source_row"] for row in rows] == accepted
    return result


def bad(name: str) -> Path:
    return BAD / name


# -- layout -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["labs_empty.csv", "labs_header_only.csv"])
def test_empty_file_and_header_only(ingest, name):
    result = accounted(ingest(bad(name)))
    assert result.account.rows_read == 0 and result.account.by_reason == {} and result.account.problem == ""


def test_semicolon_delimiter_is_read_when_the_header_proves_it(ingest):
    result = accounted(ingest(bad("labs_semicolon.csv")), reasons={3: "unparseable_value"}, accepted=[1, 2])
    first, second = result.rows()
    assert (first["analyte"], first["value_si"]) == ("b12", 300.0)
    assert (second["analyte"], second["value_raw"], second["value_si"]) == ("mma", "0,35", 0.35)


def test_tab_delimiter_is_read_when_the_header_proves_it(ingest):
    accounted(ingest(bad("labs_tab.csv")), reasons={}, accepted=[1, 2])


def test_missing_columns_quarantine_every_record_with_its_text(ingest):
    result = accounted(ingest(bad("labs_missing_columns.csv")), reasons={1: "missing_columns", 2: "missing_columns"})
    assert result.quarantine()[0]["raw"].startswith("P001,A1,14685-2")


def test_records_with_extra_or_missing_fields_are_malformed(ingest):
    result = accounted(ingest(bad("labs_extra_fields.csv")),
                       reasons={2: "malformed_row", 3: "malformed_row", 4: "malformed_row"}, accepted=[1])
    assert result.quarantine()[0]["raw"].endswith(",extra")


def test_unknown_extra_columns_are_ignored_even_with_reserved_names(ingest):
    # The header also has columns named source_row, _overflow and record_status, and one with no name: none
    # collides with the reader's own columns, and a CSV record_status column drops nothing.
    result = accounted(ingest(bad("labs_unknown_columns.csv")), reasons={}, accepted=[1, 2])
    assert [row["accession"] for row in result.rows()] == ["A1", "A2"]


def test_a_column_named_twice_quarantines_the_file(ingest):
    accounted(ingest(bad("labs_duplicate_column.csv")), reasons={1: "duplicate_columns", 2: "duplicate_columns"})


def test_quoted_newlines_quotes_and_mixed_line_endings(ingest):
    result = accounted(ingest(bad("labs_quoted_newlines.csv")), reasons={}, accepted=[1, 2, 3])
    first, second, third = result.rows()
    assert first["test_name"] == "Vitamin B12,\r\nserum (repeat)"
    assert (second["test_name"], second["performing_lab"]) == ('B12 "active"', "Lab A, Site 2")
    # The record after a lone CR keeps its first character (DuckDB's newline detection would eat it).
    assert third["patient_id"] == "P001" and third["accession"] == "A3"


def test_an_unbalanced_quote_keeps_the_swallowed_records_in_quarantine(ingest):
    """The quote opened in record 2 never closes: records 3 and 4 of the file become part of record 2's last
    field. Record 2 is malformed_row, with the swallowed records in its raw text, instead of being accepted
    (or dropped as a duplicate) with them hidden in performing_lab."""
    result = accounted(ingest(bad("labs_unbalanced_quote.csv")), reasons={2: "malformed_row"}, accepted=[1])
    raw = result.quarantine()[0]["raw"]
    assert "P002,A3" in raw and "P003,A4" in raw
    assert result.account.rows_read == 2


# -- encodings and compression ------------------------------------------------------------------------------------

def test_latin1_file_is_decoded_as_latin1(ingest):
    result = accounted(ingest(bad("labs_latin1.csv")), reasons={}, accepted=[1, 2])
    mma = result.rows()[0]
    assert (mma["analyte"], mma["unit_raw"], mma["unit_reported"], mma["value_si"]) == (
        "mma", "\u00b5mol/L", "umol/L", 0.35)
    assert mma["test_name"] == "Acide m\u00e9thylmalonique"
    assert mma["performing_lab"] == "H\u00f4pital Saint-\u00c9loi"


def test_a_file_mixing_utf8_and_latin1_lines_keeps_each_right(ingest):
    result = accounted(ingest(bad("labs_mixed_encoding.csv")), reasons={}, accepted=[1, 2])
    assert [(r["unit_reported"], r["performing_lab"]) for r in result.rows()] == [
        ("umol/L", "Caf\u00e9 Lab"), ("umol/L", "H\u00f4pital")]


def test_utf16_excel_unicode_text_is_converted(ingest):
    result = accounted(ingest(bad("labs_utf16.csv")), reasons={}, accepted=[1, 2])
    assert result.rows()[1]["unit_raw"] == "\u00b5mol/L"


def records_in_truncated_gzip(path: Path, header: bool = True) -> int:
    """Independently of the pipeline: the lines of the decompressible prefix, the cut last one included,
    the header not."""
    data = zlib.decompressobj(wbits=31).decompress(path.read_bytes())
    return data.count(b"\n") + (not data.endswith(b"\n")) - header


def test_truncated_gzip_quarantines_what_could_be_read(ingest, capsys):
    """Not a stopped run: the records before the cut (the cut one too, as far as it goes) are quarantined as
    unreadable_file (none is trusted, the file is incomplete), the problem is recorded and printed on one line
    naming the file."""
    path = bad("labs_truncated.csv.gz")
    expected = records_in_truncated_gzip(path)
    assert 0 < expected < 200
    result = accounted(ingest(path))
    assert result.account.rows_read == expected
    assert result.account.by_reason == {("quarantined", "unreadable_file"): expected}
    assert set(result.reasons().values()) == {"unreadable_file"}
    assert result.quarantine()[0]["raw"].startswith("P0001,A1,")
    assert result.account.problem == "the gzip stream is truncated or corrupt"
    [line] = [line for line in capsys.readouterr().out.splitlines() if "unreadable" in line]
    assert line.startswith("labs_truncated.csv.gz: unreadable file (the gzip stream is truncated or corrupt)")
    assert "P0" not in line


def test_truncated_fhir_ndjson_gzip_quarantines_what_could_be_read(ingest):
    path = bad("Observation_truncated.ndjson.gz")
    result = accounted(ingest(path))
    # The gzip module keeps back the cut last line of an NDJSON file: only complete lines are records there.
    assert 0 < result.account.rows_read == records_in_truncated_gzip(path, header=False) - 1
    assert set(result.reasons().values()) == {"unreadable_file"}
    assert result.account.problem == "the gzip stream is truncated or corrupt"


@pytest.mark.parametrize("name", ["labs_plain_named.csv.gz", "labs_gzip_named.csv"])
def test_compression_is_recognised_by_content_not_name(ingest, name):
    accounted(ingest(bad(name)), reasons={}, accepted=[1])


def test_corrupt_gzip_in_the_middle(tmp_path, ingest):
    data = bytearray(gzip.compress(b"".join(
        (",".join(lab_row(patient_id=f"P{n:04d}", accession=f"A{n}").values()) + "\n").encode()
        for n in range(2000)), mtime=0))
    header = (",".join(lab_row()) + "\n").encode()
    data = bytearray(gzip.compress(header, mtime=0)) + data  # two members, the second one damaged below
    middle = len(data) * 3 // 4
    data[middle:middle + 64] = bytes(64)
    path = tmp_path / "in" / "labs_corrupt.csv.gz"
    path.parent.mkdir()
    path.write_bytes(bytes(data))
    result = accounted(ingest(path))
    # DuckDB alone reads such a stream without complaint, as garbage records (patient ids among them).
    assert result.account.problem == "the gzip stream is truncated or corrupt"
    assert result.account.rows_accepted == 0 and set(result.reasons().values()) == {"unreadable_file"}


# -- files that are not lab exports ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, what", [("labs_pdf.csv", "a PDF document"),
                                        ("labs_zip.csv", "a zip archive or an Office Open XML workbook")])
def test_a_binary_file_named_labs_csv_is_unreadable_with_no_records(ingest, name, what):
    """Not one record can be read from a PDF or a zip: rows_read 0, and the reason is still in the accounting
    (a 0-row unreadable_file outcome) and in the file's problem."""
    result = accounted(ingest(bad(name)))
    assert result.account.rows_read == 0
    assert result.account.by_reason == {("quarantined", "unreadable_file"): 0}
    assert result.account.problem == f"not a CSV text file: {what}"


def test_some_other_csv_named_labs_is_quarantined_as_missing_columns(ingest):
    accounted(ingest(bad("labs_x.csv")), reasons={1: "missing_columns", 2: "missing_columns", 3: "missing_columns"})


def test_random_bytes_named_labs_csv(tmp_path, ingest):
    generator = random.Random(20260101)
    path = tmp_path / "in" / "labs_noise.csv"
    path.parent.mkdir()
    path.write_bytes(bytes(generator.randrange(256) for _ in range(200_000)))
    result = accounted(ingest(path))
    assert set(result.reasons().values()) <= {"missing_columns", "unreadable_file"}


# -- values ---------------------------------------------------------------------------------------------------------

def test_excel_mangled_dates_are_unparseable(ingest):
    accounted(ingest(bad("labs_excel_dates.csv")), accepted=[1],
              reasons={n: "unparseable_date" for n in range(2, 8)})


def test_dates_in_the_future_and_before_1900(ingest):
    result = accounted(ingest(bad("labs_date_range.csv")), accepted=[1, 2], reasons={
        3: "future_date", 4: "future_date", 5: "implausible_date", 6: "implausible_date",
        7: "unparseable_date", 8: "unparseable_date"})
    assert [str(row["collected_at"]) for row in result.rows()] == ["1900-01-01 00:00:00", "2026-01-01 23:59:00"]


def test_decimal_commas_and_thousands_separators(ingest):
    result = accounted(ingest(bad("labs_number_formats.csv")), accepted=[1, 2, 3, 8], reasons={
        4: "unparseable_value", 5: "unparseable_value", 6: "unparseable_value", 7: "unparseable_value"})
    values = [(row["value_raw"], row["comparator"], row["value_si"]) for row in result.rows()]
    assert values == [("0,35", None, 0.35), ("12,5", None, 12.5), ("<0,05", "<", 0.05),
                      ("1234", None, pytest.approx(1234 * 0.7378))]


def test_negative_and_absurd_values(ingest):
    result = accounted(ingest(bad("labs_absurd_values.csv")), accepted=[10, 11], reasons={
        1: "implausible_value", 2: "implausible_value", 3: "implausible_value", 4: "implausible_value",
        5: "unparseable_value", 6: "unparseable_value", 7: "unparseable_value", 8: "implausible_value",
        9: "implausible_value", 12: "implausible_value"})
    assert [row["value_si"] for row in result.rows()] == [15000.0, 9.9e9]


def test_text_results(ingest):
    result = accounted(ingest(bad("labs_text_results.csv")), accepted=[5, 8], reasons={
        1: "unparseable_value", 2: "unparseable_value", 3: "unparseable_value", 4: "unparseable_value",
        6: "unparseable_value"})
    assert result.account.by_reason[("dropped", "cancelled")] == 1
    assert result.rows()[0]["value_text"] == "positive"
    assert "hemolyzed" in result.quarantine()[0]["raw"]


def test_patient_ids_are_kept_exactly(ingest):
    result = accounted(ingest(bad("labs_patient_ids.csv")), reasons={8: "missing_patient_id"},
                       accepted=[1, 2, 3, 4, 5, 6, 7])
    assert [row["patient_id"] for row in result.rows()] == [
        "000123", "AB 12 CD", "0042", "0042", "P-001/A", "0000", "1.23457E+11"]


def test_registry_dates(ingest):
    result = accounted(ingest(bad("patients_bad_dates.csv")), accepted=[1, 6, 7], reasons={
        2: "unparseable_date", 3: "unparseable_date", 4: "implausible_date", 5: "future_date"})
    assert [row["patient_id"] for row in result.rows()] == ["P001", "P006", "P007"]


# -- size -----------------------------------------------------------------------------------------------------------

def write_with_huge_line(path: Path, huge_record: str) -> Path:
    good = ",".join(lab_row().values())
    header = ",".join(lab_row())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{header}\n{good}\n{huge_record}\n{good.replace(',A1,', ',A3,')}\n")
    return path


@pytest.mark.parametrize("shape", ["one huge field", "no delimiter"])
def test_a_single_line_of_30_mb(tmp_path, ingest, shape, capsys):
    """A 30 MB record (a blob pasted into a field, or a file whose line breaks were lost) is quarantined on its
    own, kept whole in its raw text, and the records around it are accepted."""
    size = 30 * 1024 * 1024
    if shape == "one huge field":
        huge = ",".join(lab_row(accession="A2", performing_lab="L" * size).values())
        reason = "oversized_row"
    else:
        huge = "x" * size
        reason = "malformed_row"
    path = write_with_huge_line(tmp_path / "in" / "labs_huge.csv", huge)
    started = time.perf_counter()
    result = accounted(ingest(path), reasons={2: reason}, accepted=[1, 3])
    elapsed = time.perf_counter() - started
    assert len(result.quarantine()[0]["raw"]) >= size
    with capsys.disabled():
        print(f"\n30 MB line ({shape}): ingested in {elapsed:.1f} s")  # shown, not asserted: see benchmarks/


def test_a_record_longer_than_duckdb_allows_is_read_by_python(tmp_path, ingest, monkeypatch):
    # DuckDB's line limit is 128 MB; lowered here so that the test stays small.
    monkeypatch.setattr(csv_reader_module, "_MAX_LINE_BYTES", 1 << 20)
    path = write_with_huge_line(tmp_path / "in" / "labs_huge.csv", "x" * (2 << 20))
    result = accounted(ingest(path), reasons={2: "malformed_row"}, accepted=[1, 3])
    assert result.account.problem == ""


@pytest.mark.parametrize("patient_field, lab_field, patient_id, lab", [
    ('"P00"12', "LabA", "P0012", "LabA"),                       # DuckDB alone: P001, another patient
    ('"P0012" ', "LabA", "P0012", "LabA"),
    ("P0012", '"Lab A" site 2', "P0012", "Lab A site 2"),       # DuckDB alone: Lab A site
    ("P0012", '"LabA', "P0012", "LabA"),                       # a quote still open at the end of the file
])
def test_malformed_quoting_loses_no_character(tmp_path, ingest, patient_field, lab_field, patient_id, lab):
    """DuckDB's lenient reader drops a character after a closing quote followed by text, and the last byte of
    a file ending inside a quote: such a file is read by Python's csv module instead (a final line break is
    added to a file that has none)."""
    fields = {**lab_row(accession="A2"), "patient_id": patient_field, "performing_lab": lab_field}
    path = tmp_path / "in" / "labs.csv"
    path.parent.mkdir()
    path.write_text(",".join(lab_row()) + "\n" + ",".join(lab_row().values()) + "\n" + ",".join(fields.values()))
    result = accounted(ingest(path), accepted=[1, 2])
    assert (result.rows()[1]["patient_id"], result.rows()[1]["performing_lab"]) == (patient_id, lab)


def make_tiny_files(folder: Path, count: int) -> Path:
    for n in range(count):
        write_labs(folder / f"labs_{n:05d}.csv",
                   [lab_row(patient_id=f"P{n:05d}", accession=f"A{n}", collected_at="2025-03-01")])
    return folder


# Many one-row files: 300 by default, a bounded version that keeps `make test` short (several small-file
# tasks of SMALL_FILES_PER_TASK either way); B12LAB_TINY_FILES=3000 for the full stress run.
TINY_FILES = int(os.environ.get("B12LAB_TINY_FILES", "300"))


def test_each_lake_file_is_read_once_for_the_duplicate_check_however_many_files_follow(tmp_path, monkeypatch):
    """One-row files, each ingested against the lake of the ones before it, as the flow does. Each ingest used
    to read every earlier file again (1000 files took 254 s, the last ones 0.3 s each): the duplicate keys of
    small lake files are kept, so each file is read once. Counted, not timed (timings belong to benchmarks/)."""
    import pyarrow.parquet as pq

    reads: list[str] = []
    read_table = pq.read_table

    def counting_read_table(source, *args, **kwargs):
        if "lab_results" in str(source):
            reads.append(str(source))
        return read_table(source, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", counting_read_table)
    count = 40
    folder = make_tiny_files(tmp_path / "in", count)
    exports, ignored = discover_exports(folder)
    assert len(exports) == count and ignored == []
    lake, lab_files = Lake(tmp_path / "lake"), []
    for export in exports:
        with duckdb.connect() as con:
            account = ingest_file(con, export, lake, "test-run", date(2026, 1, 1), list(lab_files))
        assert account.reconciles and account.rows_read == account.rows_accepted == 1
        lab_files.append(lake.data_file("lab_results", export.source_hash))
    # every file but the last was an earlier file of a later ingest: each read once, not once per later file
    assert sorted(reads) == sorted(str(path) for path in lab_files[:-1])


# -- whole flow -----------------------------------------------------------------------------------------------------

AS_OF = date(2025, 6, 1)
FLOW_CASES = ["labs_truncated.csv.gz", "labs_pdf.csv", "labs_latin1.csv", "labs_semicolon.csv", "labs_x.csv",
              "labs_unbalanced_quote.csv", "labs_absurd_values.csv", "patients_bad_dates.csv"]


def read(warehouse: Path, query: str, params=None):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(query, params or {}).fetchall()


def good_labs(folder: Path) -> Path:
    return write_labs(folder / "labs_good.csv", [
        lab_row(patient_id="G001", accession="G1", result_value="120", collected_at="2025-03-01"),
        lab_row(patient_id="G002", accession="G2", result_value="450", collected_at="2025-03-01"),
    ])


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_publishes_past_damaged_files(tmp_path):
    inputs, output = tmp_path / "in", tmp_path / "out"
    good_labs(inputs)
    for name in FLOW_CASES:
        shutil.copy(bad(name), inputs / name)
    # At the default share, a file this damaged is an alarm: the run stops, naming the first such file.
    from b12lab.flows.nightly import RunFailed

    with pytest.raises(RunFailed, match=r"^labs_absurd_values.csv: \d+ of \d+ records in scope quarantined"):
        flow_night(inputs, output, AS_OF)
    assert not (output / "warehouse.duckdb").exists()
    # A site that takes what it can get from such files, with every record accounted for:
    record = flow_night(inputs, output, AS_OF, max_quarantine_share=1.0)
    assert record["status"] == "published" and record["files_ingested"] == len(FLOW_CASES) + 1
    assert record["rows_read"] == record["rows_accepted"] + record["rows_quarantined"] + record["rows_dropped"]

    warehouse = output / "warehouse.duckdb"
    files = {name: (read_, acc, q, d) for name, read_, acc, q, d in read(
        warehouse, "select source_file, rows_read, rows_accepted, rows_quarantined, rows_dropped from ingested_files")}
    assert set(files) == {"labs_good.csv", *FLOW_CASES}
    assert all(r == a + q + d for r, a, q, d in files.values())
    assert files["labs_pdf.csv"] == (0, 0, 0, 0)
    assert read(warehouse, "select rows from ingest_outcomes where source_file = 'labs_pdf.csv' "
                           "and outcome = 'quarantined' and reason = 'unreadable_file'") == [(0,)]
    truncated = files["labs_truncated.csv.gz"]
    assert truncated[0] == truncated[2] == records_in_truncated_gzip(bad("labs_truncated.csv.gz"))
    assert read(warehouse, "select distinct reason from quarantine where source_file = 'labs_truncated.csv.gz'") == [
        ("unreadable_file",)]
    assert read(warehouse, "select unit_si, value_si from lab_results where source_file = 'labs_latin1.csv' "
                           "and analyte = 'mma'") == [("umol/L", 0.35)]
    assert read(warehouse, "select count(*) from lab_results where patient_id like 'G%'") == [(2,)]

    summary = json.loads((output / "run_summary.json").read_text())
    problems = {f["source_file"]: f["problem"] for f in summary["files"] if f["problem"]}
    assert problems == {"labs_truncated.csv.gz": "the gzip stream is truncated or corrupt",
                        "labs_pdf.csv": "not a CSV text file: a PDF document"}

    # The same bytes are not retried; the complete file, re-sent, is ingested, and its records are not
    # duplicates of the quarantined ones.
    write_labs(inputs / "labs_truncated_resent.csv.gz",
               [lab_row(patient_id=f"P{n:04d}", accession=f"A{n}") for n in range(1, 201)], gz=True)
    again = flow_night(inputs, output, AS_OF, max_quarantine_share=1.0)
    assert again["files_ingested"] == 1 and again["files_skipped"] == len(FLOW_CASES) + 1
    assert again["rows_accepted"] == 200


@pytest.mark.usefixtures("prefect_harness")
def test_a_failure_that_is_not_about_content_stops_with_one_line_naming_the_file(tmp_path, monkeypatch):
    """The one way a file still stops the run: something other than its content fails (here DuckDB, whose
    message quotes a record). The reason is one line, names the file, quotes no patient id; nothing is
    committed and the previous publication stays as it was."""
    inputs, output = tmp_path / "in", tmp_path / "out"
    good_labs(inputs)
    flow_night(inputs, output, AS_OF)
    warehouse = output / "warehouse.duckdb"
    before = warehouse.read_bytes()
    current = (output / "current").resolve()

    def failing_load(con, export, scratch):
        raise duckdb.ConversionException("Could not convert string 'P123456' to INT32\nLINE 1: P123456,A1,...")

    monkeypatch.setattr(ingest_module, "load_csv_file", failing_load)
    write_labs(inputs / "labs_next.csv", [lab_row(patient_id="P123456")])
    from b12lab.flows.nightly import RunFailed

    with pytest.raises(RunFailed) as raised:
        flow_night(inputs, output, AS_OF)
    assert isinstance(raised.value.__cause__, IngestError)
    message = str(raised.value.__cause__)
    assert message == "labs_next.csv: could not be ingested (ConversionException); nothing was committed"
    assert str(raised.value).startswith(message + " (details: ")
    assert warehouse.read_bytes() == before and (output / "current").resolve() == current
    summary = json.loads((output / "run_summary.json").read_text())
    assert summary["status"] == "failed" and summary["message"] == message
    assert "P123456" not in (output / "run_summary.json").read_text()
    assert read(warehouse, "select count(*) from ingested_files where source_file = 'labs_next.csv'") == [(0,)]

    monkeypatch.undo()
    record = flow_night(inputs, output, AS_OF)
    assert record["status"] == "published" and record["files_ingested"] == 1


@pytest.mark.usefixtures("prefect_harness")
def test_thousands_of_tiny_files_through_the_flow(tmp_path, capsys):
    """The run completes and accounts for every file. Small files share a Prefect task and a DuckDB
    connection (one of each per file made 3000 files take about 8 minutes)."""
    inputs = make_tiny_files(tmp_path / "in", TINY_FILES)
    started = time.perf_counter()
    record = flow_night(inputs, tmp_path / "out", AS_OF)
    elapsed = time.perf_counter() - started
    assert record["status"] == "published"
    assert record["files_ingested"] == record["rows_read"] == record["rows_accepted"] == TINY_FILES
    with capsys.disabled():
        print(f"\nflow over {TINY_FILES} one-row files: {elapsed:.0f} s ({elapsed / TINY_FILES * 1000:.0f} ms per file)")
