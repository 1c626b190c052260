"""Property-based tests of the row accounting: random records, written as CSV, through the real ingest.

Hypothesis writes lab and registry exports whose fields come from realistic alphabets (codes, units, numbers,
dates in many spellings) and hostile ones (delimiters, quotes, line breaks, tabs, no-break spaces, NUL, the
reader's own null marker 0x1E, non-Latin text), with random field counts per record, random quoting and line
endings, and checks what must hold whatever the input:

- rows_read is the number of records written (blank lines are not records: the CSV reader skips them, so no
  record is written as an empty line);
- rows_read = accepted + quarantined + dropped, and the lake holds exactly the accepted and quarantined rows;
- every quarantined row has a reason from the known set (the quarantine suite's value_set), every dropped row a
  named rule;
- an accepted lab row has a patient_id, analyte and collected_at, and value_si > 0 or a value_text; an
  accepted registry row has its patient_id and the dates its table requires;
- the patient_id of an accepted row is the input's, with only surrounding whitespace trimmed (str.strip()).

Each property is bounded (max_examples 60, no deadline); the file runs in well under a minute.
"""
from __future__ import annotations

import json
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b12lab.ingest import EXPORT_KINDS, LAB_COLUMNS, discover_exports, ingest_file
from b12lab.lake.lake import Lake
from b12lab.common.paths import EXPECTATIONS_DIR

# Hypothesis warns when the global `random` state changes while a strategy draws. These strategies never use
# it; in the whole suite Prefect's client threads in the same worker process do (their retry and lease jitter,
# prefect/utilities/math.py), and the warning named whichever strategy was drawing at that moment. Run alone,
# the file raises none.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning")

KNOWN_QUARANTINE = set(next(
    e["kwargs"]["value_set"] for e in json.loads((EXPECTATIONS_DIR / "expectations" / "quarantine.json").read_text())[
        "expectations"] if e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"]["column"] == "reason"))
DROP_RULES = {"out_of_scope", "cancelled", "entered_in_error", "duplicate", "refuted", "not_taken", "draft",
              "missing_date", "trailer"}
INGEST_DATE = date(2026, 1, 1)

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                                      HealthCheck.data_too_large])

# -- alphabets --------------------------------------------------------------------------------------------------

HOSTILE = st.text(
    alphabet=st.sampled_from(list(
        ',;"\'\n\r\t |\\ \u00a0\x00\x1e\x0b\u2028' "abcXYZ0123456789-.:<>=+eE/" "\u00b5\u03bc\u00e9\u00c9\u00f4\u00df"
        "\u6f22\U0001f600\ufeff\ufffd")),
    max_size=24,
)
WHITESPACE = st.sampled_from(["", "", " ", "  ", "\t", "\u00a0", " \t", "\u3000"])


@st.composite
def padded(draw, core):
    return draw(WHITESPACE) + draw(core) + draw(WHITESPACE)


PATIENT_IDS = st.one_of(
    st.from_regex(r"P[0-9]{3,6}", fullmatch=True),
    st.from_regex(r"0{1,4}[0-9]{1,5}", fullmatch=True),
    st.from_regex(r"[A-Z]{2} [0-9]{2} [A-Z]{2}", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12),
)
DATES = st.one_of(
    st.dates(min_value=date(1850, 1, 1), max_value=date(2100, 12, 31)).map(date.isoformat),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M")),
    st.datetimes().map(lambda d: d.strftime("%d/%m/%Y")),
    st.datetimes().map(lambda d: d.strftime("%d-%b-%y")),
    st.integers(0, 60000).map(str),
    st.sampled_from(["epoch", "infinity", "-infinity", "today", "2024-02-30", "2024-03-05 9:00 PM",
                     "2024-03-05T09:00:00+05:00", "2024-03-05T09:00:00Z", "0001-01-01", "", " "]),
)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda x: f"{x:.3f}"),
    st.integers(-10, 100000).map(str),
    st.sampled_from(["0,35", "12,5", "1,234", "1,234,567", "1.234,5", "1 234", "<50", "> 1476", "<=0,05", "=245",
                     ".5", "5.", "1e308", "1e999", "-1e-320", "NaN", "inf", "hemolyzed", "see comment",
                     "Positive", "NEGATIVE", "equivocal", "", " "]),
)
LOINCS = st.sampled_from(["14685-2", "2132-9", "2170-9", "72160-5", "13964-2", "13965-9", "2284-8", "718-7",
                          "787-2", "31444-3", "31443-5", "99999-9", ""])
LOCAL_CODES = st.sampled_from(["", "", "B12", "mma", "HOLOTC", "FOL", "nope"])
UNITS = st.sampled_from(["pmol/L", "pg/mL", "ng/L", "PG/ML", "pmol/l", "umol/L", "\u00b5mol/L", "\u03bcmol/L",
                         "nmol/L", "nmol/mL", "ng/mL", "ug/L", "mcg/L", "g/dL", "g/L", "fL", "um3", "mg/dL", "", " "])
STATUSES = st.sampled_from(["F", "C", "P", "A", "f", "final", "corrected", "X", "W", "D", "cancelled",
                            "entered-in-error", "", "Z", " F "])


def field(realistic):
    """Mostly a realistic value, sometimes surrounded by whitespace, sometimes hostile text."""
    return st.one_of(realistic, padded(realistic), HOSTILE)


LAB_FIELDS = {
    "patient_id": field(PATIENT_IDS), "accession": field(st.from_regex(r"A[0-9]{1,4}", fullmatch=True)),
    "loinc": field(LOINCS), "local_code": field(LOCAL_CODES), "test_name": field(st.sampled_from(
        ["Vitamin B12", "B12, serum\n(repeat)", 'B12 "active"', "MMA"])),
    "result_value": field(NUMBERS), "unit": field(UNITS), "reference_range": field(st.sampled_from(
        ["", "0-370", "<0.40", "148 - 600", "0,1-0,4"])), "abnormal_flag": field(st.sampled_from(["", "L", "H"])),
    "status": field(STATUSES), "collected_at": field(DATES), "resulted_at": field(DATES),
    "performing_lab": field(st.sampled_from(["LabA", "H\u00f4pital", "Lab, Site 2"])),
}
REGISTRY_FIELDS = {
    "patients": {"patient_id": field(PATIENT_IDS), "birth_date": field(DATES),
                 "sex": field(st.sampled_from(["F", "M", "f", "", "U"])),
                 "practice": field(st.sampled_from(["Riverside", "Hillview", ""]))},
    "diagnoses": {"patient_id": field(PATIENT_IDS),
                  "code_system": field(st.sampled_from(["ICD10", "ICD-10", "icd9", "SNOMED", "sct", "READ", ""])),
                  "code": field(st.sampled_from(["D51.0", "D510", "281.0", "84027009", "", "E53.8"])),
                  "recorded_at": field(DATES)},
    "medications": {"patient_id": field(PATIENT_IDS),
                    "drug": field(st.sampled_from(["Hydroxocobalamin 1mg", "Cyanocobalamin", ""])),
                    "atc_code": field(st.sampled_from(["B03BA03", "b03ba01", "", "XYZ"])),
                    "route": field(st.sampled_from(["IM", "oral", ""])),
                    "dose": field(st.sampled_from(["1 mg", "50 ug", ""])),
                    "start_date": field(DATES), "end_date": field(DATES)},
}


def csv_line(fields: list[str], quoting: str) -> str:
    """One CSV record. A field holding the delimiter, a quote or a line break is always quoted (Python's
    csv.writer leaves a lone CR unquoted when the line terminator is LF: not valid CSV); 'all' quotes every
    field, 'text' every field that is not a number."""
    def quoted(value: str) -> str:
        needed = any(c in value for c in ',"\r\n') or quoting == "all" or (
            quoting == "text" and not value.replace(".", "", 1).lstrip("-").isdigit())
        return '"' + value.replace('"', '""') + '"' if needed else value
    return ",".join(quoted(value) for value in fields)


@st.composite
def export(draw, fields: dict):
    """(csv bytes, the records as lists of fields, each record's patient_id field or None when it has none)."""
    columns = list(fields)
    header = draw(st.permutations(columns))
    records = []
    for _ in range(draw(st.integers(0, 12))):
        values = {name: draw(strategy) for name, strategy in fields.items()}
        record = [values[name] for name in header]
        shape = draw(st.sampled_from(["as is"] * 6 + ["short", "long"]))
        if shape == "short":
            record = record[:draw(st.integers(1, len(record) - 1))]
        elif shape == "long":
            record = record + draw(st.lists(HOSTILE, min_size=1, max_size=3))
        if record == [""] or not record:
            record = ["x"]  # a record written as an empty line is not a record: see the module docstring
        records.append(record)
    quoting = draw(st.sampled_from(["minimal", "all", "text"]))
    terminator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = "".join(csv_line(record, quoting) + terminator for record in [header, *records])
    if draw(st.booleans()):
        text = text.rstrip("\r\n")  # no line break after the last record
    position = header.index("patient_id")
    ids = [record[position] if len(record) > position else None for record in records]
    return text.encode("utf-8", errors="surrogatepass"), records, ids


def run_ingest(name: str, data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in" / name
        path.parent.mkdir()
        path.write_bytes(data)
        [found], _ = discover_exports(path.parent)
        lake = Lake(Path(folder) / "lake")
        with duckdb.connect() as con:
            account = ingest_file(con, found, lake, "prop", INGEST_DATE, [])
            accepted = con.execute("select * from read_parquet($p) order by source_row",
                                   {"p": str(lake.data_file(found.kind.table, found.source_hash))})
            names = [d[0] for d in accepted.description]
            accepted = [dict(zip(names, row)) for row in accepted.fetchall()]
            quarantined = con.execute("select source_row, reason, raw from read_parquet($p) order by source_row",
                                      {"p": str(lake.data_file("quarantine", found.source_hash))}).fetchall()
    return account, accepted, quarantined


def check_accounting(account, accepted, quarantined, records):
    assert account.problem == ""
    assert account.rows_read == len(records)
    assert account.reconciles
    assert len(accepted) == account.rows_accepted and len(quarantined) == account.rows_quarantined
    for (outcome, reason), _ in account.by_reason.items():
        if outcome == "quarantined":
            assert reason in KNOWN_QUARANTINE
        elif outcome == "dropped":
            assert reason in DROP_RULES
        else:
            assert (outcome, reason) == ("accepted", "")
    assert {reason for _, reason, _ in quarantined} <= KNOWN_QUARANTINE
    numbers = [row["source_row"] for row in accepted] + [number for number, _, _ in quarantined]
    assert len(numbers) == len(set(numbers)) and all(1 <= n <= len(records) for n in numbers)


@PROPERTY_SETTINGS
@given(export(LAB_FIELDS))
def test_lab_exports_account_for_every_record(case):
    data, records, ids = case
    account, accepted, quarantined = run_ingest("labs.csv", data)
    check_accounting(account, accepted, quarantined, records)
    for row in accepted:
        assert row["patient_id"] and row["analyte"] and row["collected_at"] is not None
        assert (row["value_si"] is not None and row["value_si"] > 0) or row["value_text"] is not None
        assert row["patient_id"] == ids[row["source_row"] - 1].strip()


@PROPERTY_SETTINGS
@given(st.sampled_from(sorted(REGISTRY_FIELDS)).flatmap(
    lambda kind: st.tuples(st.just(kind), export(REGISTRY_FIELDS[kind]))))
def test_registry_exports_account_for_every_record(case):
    kind, (data, records, ids) = case
    account, accepted, quarantined = run_ingest(f"{kind}.csv", data)
    check_accounting(account, accepted, quarantined, records)
    required = {"patients": [], "diagnoses": ["code", "code_system"],  # an undated diagnosis is accepted
                "medications": ["start_date"]}[kind]
    for row in accepted:
        assert row["patient_id"] == ids[row["source_row"] - 1].strip() and row["patient_id"]
        assert all(row[name] is not None for name in required)


@PROPERTY_SETTINGS
@given(st.lists(st.binary(max_size=64), max_size=20), st.sampled_from(["labs.csv", "patients.csv", "labs.csv.gz"]))
def test_arbitrary_bytes_never_raise_and_reconcile(lines, name):
    """Lines of random bytes after a proper header: whatever the reader makes of them, every record it reads
    ends with an outcome, and nothing raises."""
    kind = "labs" if name.startswith("labs") else "patients"
    data = (",".join(EXPORT_KINDS[kind].columns) + "\n").encode() + b"\n".join(lines)
    if name.endswith(".gz"):
        import gzip

        data = gzip.compress(data, mtime=0)
    account, accepted, quarantined = run_ingest(name, data)
    assert account.reconciles and account.problem == ""
    assert len(accepted) + len(quarantined) + account.rows_dropped == account.rows_read
    assert {reason for _, reason, _ in quarantined} <= KNOWN_QUARANTINE


def test_lab_columns_are_the_contract():
    assert list(LAB_FIELDS) == list(LAB_COLUMNS)
    for kind, fields in REGISTRY_FIELDS.items():
        assert list(fields) == list(EXPORT_KINDS[kind].columns)
