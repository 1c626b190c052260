"""Lab export ingest: units, censored values, statuses, duplicates, every quarantine reason, file formats."""
from __future__ import annotations

import pytest

from b12lab.ingest import deduplication
from tests.helpers.exports import lab_row, write_csv, write_labs


@pytest.mark.parametrize(
    "loinc, local_code, value, unit, analyte, value_si, unit_si",
    [
        ("14685-2", "", "300", "pmol/L", "b12", 300.0, "pmol/L"),
        ("2132-9", "", "400", "pg/mL", "b12", 400 * 0.7378, "pmol/L"),
        ("2132-9", "", "400", "ng/L", "b12", 400 * 0.7378, "pmol/L"),
        ("2132-9", "", "400", "PG/ML", "b12", 400 * 0.7378, "pmol/L"),
        ("72160-5", "", "45", "pmol/l", "holotc", 45.0, "pmol/L"),
        ("13964-2", "", "0.35", "umol/L", "mma", 0.35, "umol/L"),
        ("13964-2", "", "0.35", "\u00b5mol/L", "mma", 0.35, "umol/L"),  # micro sign
        ("13964-2", "", "0.35", "\u03bcmol/L", "mma", 0.35, "umol/L"),  # Greek mu
        ("13964-2", "", "350", "nmol/L", "mma", 0.35, "umol/L"),
        ("13964-2", "", "0.35", "nmol/mL", "mma", 0.35, "umol/L"),
        ("13965-9", "", "12.5", "umol/L", "homocysteine", 12.5, "umol/L"),
        ("2284-8", "", "20", "nmol/L", "folate", 20.0, "nmol/L"),
        ("2284-8", "", "5", "ng/mL", "folate", 5 * 2.266, "nmol/L"),
        ("2284-8", "", "5", "ug/L", "folate", 5 * 2.266, "nmol/L"),
        ("718-7", "", "13.5", "g/dL", "hemoglobin", 135.0, "g/L"),
        ("718-7", "", "135", "g/L", "hemoglobin", 135.0, "g/L"),
        ("787-2", "", "101.5", "fL", "mcv", 101.5, "fL"),
        ("", "B12", "300", "pmol/L", "b12", 300.0, "pmol/L"),  # local code only
        ("", "mma", "0.2", "umol/L", "mma", 0.2, "umol/L"),  # local code, other case
    ],
)
def test_unit_conversion_to_canonical_unit(tmp_path, ingest, loinc, local_code, value, unit, analyte, value_si,
                                            unit_si):
    path = write_labs(tmp_path / "in" / "labs.csv",
                      [lab_row(loinc=loinc, local_code=local_code, result_value=value, unit=unit)])
    [row] = ingest(path).rows()
    assert row["analyte"] == analyte
    assert row["value_si"] == pytest.approx(value_si)
    assert row["unit_si"] == unit_si
    assert row["value_raw"] == value and row["unit_raw"] == unit
    assert row["value_reported"] == pytest.approx(float(value))


@pytest.mark.parametrize(
    "text, comparator, bound",
    [("<50", "<", 50.0), ("< 50", "<", 50.0), ("<=50", "<=", 50.0), (">1476", ">", 1476.0),
     (">=1476", ">=", 1476.0), ("=245", None, 245.0), ("245", None, 245.0), ("245.0", None, 245.0),
     (".5", None, 0.5), ("1e3", None, 1000.0)],
)
def test_censored_and_plain_values(tmp_path, ingest, text, comparator, bound):
    path = write_labs(tmp_path / "in" / "labs.csv", [lab_row(result_value=text)])
    [row] = ingest(path).rows()
    assert row["comparator"] == comparator
    assert row["value_reported"] == pytest.approx(bound)
    assert row["value_si"] == pytest.approx(bound)


def test_censored_value_is_converted_with_its_bound(tmp_path, ingest):
    path = write_labs(tmp_path / "in" / "labs.csv", [lab_row(loinc="2132-9", result_value=">2000", unit="pg/mL")])
    [row] = ingest(path).rows()
    assert row["comparator"] == ">"
    assert row["value_si"] == pytest.approx(2000 * 0.7378)


@pytest.mark.parametrize("text, expected", [("Positive", "positive"), ("NEGATIVE", "negative"),
                                            ("Equivocal", "equivocal"), ("detected", "positive")])
def test_intrinsic_factor_antibody_is_qualitative(tmp_path, ingest, text, expected):
    path = write_labs(tmp_path / "in" / "labs.csv",
                      [lab_row(loinc="31444-3", result_value=text, unit="")])
    [row] = ingest(path).rows()
    assert (row["analyte"], row["value_text"], row["value_si"]) == ("if_antibody", expected, None)


def test_lab_reference_range_is_kept_in_canonical_unit(tmp_path, ingest):
    path = write_labs(tmp_path / "in" / "labs.csv", [
        lab_row(loinc="13964-2", result_value="300", unit="nmol/L", reference_range="0-370"),
        lab_row(loinc="13964-2", accession="A2", result_value="0.3", unit="umol/L", reference_range="<0.40"),
    ])
    first, second = ingest(path).rows()
    assert first["ref_high_si"] == pytest.approx(0.37) and first["ref_low_si"] == pytest.approx(0.0)
    assert second["ref_high_si"] == pytest.approx(0.40) and second["ref_low_si"] is None


def test_every_quarantine_reason_next_to_good_rows(tmp_path, ingest):
    good = lab_row()
    rows = [
        good,                                                             # 1 accepted
        lab_row(patient_id="  "),                                         # 2 missing_patient_id
        lab_row(loinc="", local_code="", accession="A3"),                 # 3 unknown_analyte (no code at all)
        lab_row(result_value="hemolyzed", accession="A4"),                # 4 unparseable_value
        lab_row(result_value="see comment", accession="A5"),              # 5 unparseable_value
        lab_row(unit="mg/dL", accession="A6"),                            # 6 unknown_unit
        lab_row(unit="", accession="A7"),                                 # 7 unknown_unit (never guessed)
        lab_row(collected_at="2099-01-01", accession="A8"),               # 8 future_date
        lab_row(collected_at="1899-12-31", accession="A9"),               # 9 implausible_date
        lab_row(collected_at="03/01/2024", accession="A10"),              # 10 unparseable_date
        lab_row(result_value="-5", accession="A11"),                      # 11 implausible_value
        lab_row(result_value="0", accession="A12"),                       # 12 implausible_value
        lab_row(status="Z", accession="A13"),                             # 13 unknown_status
        ["P002", "A14", "14685-2"],                                       # 14 malformed_row (too few fields)
        [*lab_row(accession="A15").values(), "extra"],                    # 15 malformed_row (too many)
        lab_row(patient_id="P003", accession="A16", result_value="250"),  # 16 accepted
        lab_row(result_value="15000", accession="A17"),                   # 17 accepted: extreme but possible
    ]
    result = ingest(write_labs(tmp_path / "in" / "labs.csv", rows))
    assert result.reasons() == {
        2: "missing_patient_id", 3: "unknown_analyte", 4: "unparseable_value", 5: "unparseable_value",
        6: "unknown_unit", 7: "unknown_unit", 8: "future_date", 9: "implausible_date", 10: "unparseable_date",
        11: "implausible_value", 12: "implausible_value", 13: "unknown_status", 14: "malformed_row",
        15: "malformed_row",
    }
    assert [row["source_row"] for row in result.rows()] == [1, 16, 17]
    assert result.account.rows_read == 17
    assert (result.account.rows_accepted, result.account.rows_quarantined, result.account.rows_dropped) == (3, 14, 0)
    raw = {row["source_row"]: row["raw"] for row in result.quarantine()}
    assert "hemolyzed" in raw[4] and raw[14] == "P002,A14,14685-2"


def test_future_date_is_relative_to_the_ingest_date(tmp_path, ingest):
    from datetime import date

    path = write_labs(tmp_path / "in" / "labs.csv", [lab_row(collected_at="2026-01-01T23:59:00"),
                                                     lab_row(accession="A2", collected_at="2026-01-02")])
    result = ingest(path, ingest_date=date(2026, 1, 1))
    assert result.reasons() == {2: "future_date"}


@pytest.mark.parametrize(
    "status, outcome, reason",
    [("F", "accepted", None), ("C", "accepted", None), ("P", "accepted", None), ("f", "accepted", None),
     ("A", "accepted", None), ("X", "dropped", "cancelled"), ("W", "dropped", "entered_in_error"),
     ("", "quarantined", "unknown_status")],
)
def test_status_handling(tmp_path, ingest, status, outcome, reason):
    # A cancelled result often has no value: it is dropped with a count, not quarantined for that.
    value = "" if status == "X" else "300"
    result = ingest(write_labs(tmp_path / "in" / "labs.csv", [lab_row(status=status, result_value=value)]))
    counts = {"accepted": result.account.rows_accepted, "quarantined": result.account.rows_quarantined,
              "dropped": result.account.rows_dropped}
    assert counts[outcome] == 1 and sum(counts.values()) == 1
    if reason:
        assert (outcome, reason) in result.account.by_reason
    if outcome == "accepted":
        assert result.rows()[0]["status"] == {"f": "F", "A": "C"}.get(status, status)


def test_exact_duplicates_are_dropped_once_counted(tmp_path, ingest):
    rows = [lab_row(), lab_row(), lab_row(result_value="300.0"), lab_row(status="C"), lab_row(accession="A2")]
    result = ingest(write_labs(tmp_path / "in" / "labs.csv", rows))
    # 300 and 300.0 are the same value; a corrected result or another accession is not a duplicate.
    assert [r["source_row"] for r in result.rows()] == [1, 4, 5]
    assert result.account.by_reason[("dropped", "duplicate")] == 2


def test_copies_without_accession_are_dropped_after_the_first_wherever_they_are_in_the_file(tmp_path, ingest):
    rows = [lab_row(accession=""), lab_row(accession="A2"), lab_row(accession=""), lab_row(accession="",
            result_value="301"), lab_row(accession="")]
    result = ingest(write_labs(tmp_path / "in" / "labs.csv", rows))
    assert [r["source_row"] for r in result.rows()] == [1, 2, 4]
    assert result.account.by_reason[("dropped", "duplicate")] == 2


def test_a_quarantined_record_is_no_first_copy(tmp_path, ingest):
    # the same result twice, the first quarantined for its unit: the second is the first that counts
    rows = [lab_row(unit="furlongs"), lab_row()]
    result = ingest(write_labs(tmp_path / "in" / "labs.csv", rows))
    assert [r["source_row"] for r in result.rows()] == [2]
    assert ("dropped", "duplicate") not in result.account.by_reason


def test_copies_of_a_result_already_in_the_lake_are_all_dropped(tmp_path, ingest):
    first = ingest(write_labs(tmp_path / "in" / "labs_1.csv", [lab_row()]))
    lab_file = first.lake.data_file("lab_results", first.source_hash)
    second = ingest(write_labs(tmp_path / "in" / "labs_2.csv", [lab_row(), lab_row(accession="A2"), lab_row()]),
                    earlier_lab_files=[lab_file])
    assert [r["source_row"] for r in second.rows()] == [2]
    assert second.account.by_reason[("dropped", "duplicate")] == 2


def test_duplicates_of_results_already_in_the_lake_are_dropped(tmp_path, ingest):
    first = ingest(write_labs(tmp_path / "in" / "labs_1.csv", [lab_row()]))
    lab_file = first.lake.data_file("lab_results", first.source_hash)
    second = ingest(write_labs(tmp_path / "in" / "labs_2.csv", [lab_row(), lab_row(accession="A2")]),
                    earlier_lab_files=[lab_file])
    assert [r["source_row"] for r in second.rows()] == [2]
    assert second.account.by_reason[("dropped", "duplicate")] == 1


@pytest.mark.parametrize("lake_file_size", ["small (cached keys)", "large (read for the file's patients)"])
def test_duplicates_are_matched_on_the_cleaned_patient_id_whatever_the_lake_file_size(
        tmp_path, ingest, monkeypatch, lake_file_size):
    if lake_file_size.startswith("large"):
        monkeypatch.setattr(deduplication, "_KEY_CACHE_FILE_ROWS", 0)
    monkeypatch.setattr(deduplication, "_key_cache", {})
    first = ingest(write_labs(tmp_path / "in" / "labs_1.csv", [
        lab_row(patient_id="P001"), lab_row(patient_id="P002", accession="A2"),
        lab_row(patient_id="P004", accession="A4")]))
    lab_file = first.lake.data_file("lab_results", first.source_hash)
    second = ingest(write_labs(tmp_path / "in" / "labs_2.csv", [
        lab_row(patient_id="\tP001 "),                                # the same result, the id padded
        lab_row(patient_id="P002", accession="A2", result_value="301"),  # another value
        lab_row(patient_id="P003", accession="A3"),                     # another patient
        lab_row(patient_id="P004", accession="A4")]),                   # the same result
        earlier_lab_files=[lab_file])
    assert [r["source_row"] for r in second.rows()] == [2, 3]
    assert second.account.by_reason[("dropped", "duplicate")] == 2


def test_patient_id_is_kept_exactly(tmp_path, ingest):
    rows = [lab_row(patient_id="000123"), lab_row(patient_id="AB 12 CD", accession="A2"),
            lab_row(patient_id=" 0042 ", accession="A3")]
    result = ingest(write_labs(tmp_path / "in" / "labs.csv", rows))
    assert [r["patient_id"] for r in result.rows()] == ["000123", "AB 12 CD", "0042"]


@pytest.mark.parametrize("options", [{"bom": True}, {"gz": True}, {"bom": True, "gz": True},
                                     {"line_terminator": "\r\n"}])
def test_file_formats(tmp_path, ingest, options):
    name = "labs.csv.gz" if options.get("gz") else "labs.csv"
    rows = [lab_row(), lab_row(accession="A2", test_name="B12, serum\n(repeat)")]
    result = ingest(write_labs(tmp_path / "in" / name, rows, **options))
    assert [r["source_row"] for r in result.rows()] == [1, 2]
    assert result.rows()[1]["test_name"] == "B12, serum\n(repeat)"


@pytest.mark.parametrize(
    "collected_at, expected",
    [("2024-03-01", "2024-03-01 00:00:00"), ("2024-03-01T09:15:00", "2024-03-01 09:15:00"),
     ("2024-03-01 09:15", "2024-03-01 09:15:00"), ("2024-03-01T23:30:00+05:00", "2024-03-01 23:30:00"),
     ("2024-03-01T23:30:00Z", "2024-03-01 23:30:00"), ("2024-03-01T23:30:00.250-08:00", "2024-03-01 23:30:00.250000")],
)
def test_collection_time_keeps_the_sites_wall_clock(tmp_path, ingest, collected_at, expected):
    [row] = ingest(write_labs(tmp_path / "in" / "labs.csv", [lab_row(collected_at=collected_at)])).rows()
    assert str(row["collected_at"]) == expected


def test_columns_in_another_order_and_unknown_extra_columns(tmp_path, ingest):
    row = lab_row()
    columns = list(reversed(row)) + ["site_note"]
    path = write_csv(tmp_path / "in" / "labs.csv", columns, [{**row, "site_note": "n/a"}])
    [stored] = ingest(path).rows()
    assert stored["value_si"] == 300.0 and stored["patient_id"] == "P001"


def test_a_file_without_the_lab_columns_is_quarantined_whole(tmp_path, ingest):
    path = write_csv(tmp_path / "in" / "labs.csv", ["name", "value"], [["a", "1"], ["b", "2"]])
    result = ingest(path)
    assert result.reasons() == {1: "missing_columns", 2: "missing_columns"}
    assert result.account.reconciles and result.account.rows_read == 2


def test_header_only_file(tmp_path, ingest):
    result = ingest(write_labs(tmp_path / "in" / "labs.csv", []))
    assert result.account.rows_read == 0 and result.account.reconciles


@pytest.mark.parametrize("value, expected", [("410", 0.41), ("400", 0.4), ("370", 0.37), ("270", 0.27)])
def test_conversion_adds_no_floating_point_noise_at_boundaries(tmp_path, ingest, value, expected):
    path = write_labs(tmp_path / "in" / "labs.csv",
                      [lab_row(loinc="13964-2", result_value=value, unit="nmol/L", reference_range="0-" + value)])
    [row] = ingest(path).rows()
    assert row["value_si"] == expected and row["ref_high_si"] == expected


def test_out_of_scope_codes_are_dropped_counted_and_not_stored(tmp_path, ingest):
    """A code that maps to no analyte is not damage: dropped as out_of_scope, counted per code in
    unmapped_codes, and its text kept nowhere, even when its other fields are damaged."""
    path = write_labs(tmp_path / "in" / "labs.csv", [
        lab_row(accession="A1"),                                                          # 1 accepted
        lab_row(loinc="2093-3", test_name="Cholesterol", result_value="5.1", unit="mmol/L",
                accession="A2", collected_at="2024-01-02"),                               # 2 out of scope
        lab_row(loinc="2093-3", test_name="Cholesterol", result_value="Main Street 1",
                accession="A3", collected_at="2024-03-04", patient_id=""),                # 3 out of scope
        lab_row(loinc="", local_code="SURVEY9", test_name="Income", result_value="low",
                accession="A4"),                                                          # 4 out of scope
        lab_row(loinc="", local_code="", accession="A5"),                                 # 5 unknown_analyte
    ])
    result = ingest(path)
    assert result.account.by_reason == {("accepted", ""): 1, ("dropped", "out_of_scope"): 3,
                                        ("quarantined", "unknown_analyte"): 1}
    assert result.account.reconciles
    assert list(result.reasons().values()) == ["unknown_analyte"]
    stored = " ".join(str(row["raw"]) for row in result.quarantine())
    assert "Main Street" not in stored and "Income" not in stored
    unmapped = {(row["code_system"], row["code"]): row for row in result.rows("unmapped_codes")}
    assert set(unmapped) == {("http://loinc.org", "2093-3"), ("local", "SURVEY9")}
    cholesterol = unmapped[("http://loinc.org", "2093-3")]
    assert (cholesterol["rows"], cholesterol["display"], str(cholesterol["first_seen"]),
            str(cholesterol["last_seen"])) == (2, "Cholesterol", "2024-01-02", "2024-03-04")
    assert cholesterol["source_file"] == "labs.csv"


def test_file_level_quarantine_keeps_no_text_of_out_of_scope_rows(tmp_path, ingest):
    """A file quarantined as a whole (here a repeated column) keeps the raw text of its in-scope rows only."""
    header = [*lab_row().keys(), "unit"]
    rows = [[*lab_row(accession="A1").values(), "x"],
            [*lab_row(loinc="8867-4", test_name="Heart rate", accession="A2").values(), "x"]]
    path = write_csv(tmp_path / "in" / "labs.csv", header, rows)
    quarantined = {row["source_row"]: row for row in ingest(path).quarantine()}
    assert quarantined[1]["raw"] is not None and quarantined[2]["raw"] is None


def test_an_interrupt_during_a_duckdb_query_stops_the_ingest_as_an_interrupt(tmp_path):
    """A Ctrl-C or SIGTERM that lands inside a DuckDB query comes back as DuckDB's own error. The ingest reads
    DuckDB errors as facts about the file (not UTF-8, a quote it cannot resolve) and must not take this one for
    one: it would carry on with a stopped run, or fail it as an error (exit 1) instead of stopping it (130)."""
    import threading
    from datetime import date

    import duckdb

    from b12lab.ingest import discover_exports, ingest_file
    from b12lab.lake.lake import Lake

    drop = tmp_path / "drop"
    drop.mkdir()
    write_labs(drop / "labs_big.csv", [lab_row(patient_id=f"P{i:06d}", accession=f"A{i}") for i in range(60_000)])
    [export], _ = discover_exports(drop)
    done = threading.Event()
    with duckdb.connect() as con:
        def interrupt_until_done():
            while not done.is_set():
                con.interrupt()
                done.wait(0.002)

        interrupter = threading.Thread(target=interrupt_until_done)
        interrupter.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                ingest_file(con, export, Lake(tmp_path / "lake"), "test-run", date(2026, 1, 1), [])
        finally:
            done.set()
            interrupter.join()
