"""Per-patient FHIR Bundles against the same resources as NDJSON: `b12lab run` on each, timed.

    python -m benchmarks.bundles --patients 600 [--work DIR]

`b12lab synth --format fhir` writes the population as Bulk Data NDJSON (one file per resource type and site).
This regroups the same resources into one transaction Bundle per patient, named as Synthea names them
(`<Given>_<Family>_<id>.json`, every resource a `urn:uuid:` entry), and runs `b12lab run` on both drops into
output folders of their own, against one Prefect API server started for the comparison. It prints the wall
time of each run and their ratio, and checks that both publish the same number of lab results, patients,
diagnoses and medications: the same resources, read from two layouts. (The synthetic set's lines that are
not JSON stay out of the Bundles, so only the NDJSON run quarantines them.) Nothing is asserted about time: this is a measurement (the README's Performance section).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import duckdb

from benchmarks.harness import PrefectServer, b12lab_command

AS_OF = "2026-01-01"


def patient_of(resource: dict) -> str | None:
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return reference.split("/", 1)[1] if reference.startswith("Patient/") else None


def write_bundles(ndjson_dir: Path, target: Path) -> int:
    """One transaction Bundle per patient from the NDJSON files of `ndjson_dir`; returns how many. A resource
    without a patient (a damaged line of the synthetic set) goes to a Bundle of its own."""
    by_patient: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(ndjson_dir.glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                resource = json.loads(line)
            except json.JSONDecodeError:
                continue  # the synthetic set's unreadable lines: not a resource a Bundle could hold
            by_patient[patient_of(resource) or f"orphan-{uuid.uuid4().hex[:8]}"].append(resource)
    target.mkdir(parents=True, exist_ok=True)
    for number, (patient, resources) in enumerate(sorted(by_patient.items())):
        ids = {patient: uuid.uuid5(uuid.NAMESPACE_URL, patient)}
        # A patient of the lab files missing from the registry has no Patient entry: their resources keep the
        # server's reference (Patient/<id>), which names them as NDJSON does.
        has_entry = any(resource["resourceType"] == "Patient" for resource in resources)
        entries = []
        for resource in resources:
            resource = dict(resource)
            entry_id = uuid.uuid4()
            if resource["resourceType"] == "Patient":
                entry_id = ids[patient]
            for field in ("subject", "patient"):
                if field in resource and has_entry:
                    resource[field] = {"reference": f"urn:uuid:{ids[patient]}"}
            resource["id"] = str(entry_id)
            entries.append({"fullUrl": f"urn:uuid:{entry_id}", "resource": resource,
                            "request": {"method": "POST", "url": resource["resourceType"]}})
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        (target / f"Given{number}_Family{number}_{patient}.json").write_text(json.dumps(bundle), encoding="utf-8")
    return len(by_patient)


def lake_rows(output: Path) -> dict[str, int]:
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        return {table: con.execute(f"select count(*) from {table}").fetchone()[0]
                for table in ("lab_results", "patients", "diagnoses", "medications")}


def run(drop: Path, output: Path, env: dict) -> float:
    started = time.perf_counter()
    completed = subprocess.run([*b12lab_command(), "run", "--input", str(drop), "--output", str(output),
                                "--as-of", AS_OF], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"b12lab run on {drop.name} failed ({completed.returncode}): {completed.stderr.strip()[-500:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=600)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="b12lab-bundles-"))
    ndjson = work / "ndjson"
    subprocess.run([*b12lab_command(), "synth", "--patients", str(args.patients), "--out", str(ndjson),
                    "--format", "fhir"], check=True, capture_output=True)
    bundles = write_bundles(ndjson, work / "bundles")
    server = PrefectServer(work / "prefect-home", work / "prefect-server.log")
    server.start()
    try:
        env = server.env()
        ndjson_s = run(ndjson, work / "out-ndjson", env)
        bundles_s = run(work / "bundles", work / "out-bundles", env)
    finally:
        server.stop()
    same = lake_rows(work / "out-ndjson") == lake_rows(work / "out-bundles")
    print(f"{args.patients} patients: NDJSON {ndjson_s:.1f} s; {bundles} per-patient Bundles {bundles_s:.1f} s "
          f"({bundles_s / ndjson_s:.2f}x); the same rows in both: {'yes' if same else 'NO'} ({work})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
