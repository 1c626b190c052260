"""The line that reads a suspected unmapped analyte: what a site adds so that the code's results are kept.

One definition for the run summary, the terminal and the report (which reads the published warehouse only, so
this lives in common). A local code of a CSV file is mapped in the site's mapping file (README, "A site's own lab
CSV: mapping files"; for the contract layout, a copy of the shipped lab_csv.yaml given to --mapping). A LOINC
code, or a local code of a FHIR code system (FHIR files are read without a mapping), is a row of the value set
transforms/seeds/reference/ref_analyte_codes.csv.
"""
from __future__ import annotations

import csv
import io
import json

LOINC_SYSTEM = "http://loinc.org"
ANALYTE_CODES_SEED = "transforms/seeds/reference/ref_analyte_codes.csv"


def _csv_row(*fields: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def mapping_line(code_system: str, code: str, analyte: str, display: str | None = None) -> str:
    """`local_codes: {"SB12": b12}` (a mapping file's key, YAML), or the seed row that maps a LOINC or FHIR
    code: `transforms/seeds/reference/ref_analyte_codes.csv: loinc,16695-9,b12,"..."`."""
    if code_system == LOINC_SYSTEM:
        return f"{ANALYTE_CODES_SEED}: {_csv_row('loinc', code, analyte, display or '')}"
    if code_system.startswith(("http://", "https://", "urn:")):
        return f"{ANALYTE_CODES_SEED}: {_csv_row('local', code, analyte, display or '')}"
    # JSON's double-quoted string is YAML's: a code of digits (an ITEMID) stays text, leading zeros kept.
    return f"local_codes: {{{json.dumps(code, ensure_ascii=False)}: {analyte}}}"
