"""The pseudonymised analytics mart: the cohorts for analysts who must not see identities.

OUTPUT/analytics/analytics.duckdb holds the marts with `patient_id` replaced by `patient_key`, a keyed hash
(HMAC-SHA-256) of the identifier. The key comes from the settings (B12LAB_PSEUDONYM_KEY) and is never
stored with the data: without it a key cannot be turned back into a patient, and with the same key the same
patient gets the same key every night, so analysts can follow patients over time. Every mart that names patients
(the cohorts, the flags, the worklists) is keyed this way; a mart without `patient_id` (the counts) is copied as
it is. Lineage that points into the identified exports (accession, source file and row) is left out.
"""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import duckdb
import pyarrow as pa

# Columns that would let an analyst go back to the identified exports.
WITHHELD_COLUMNS = {"patient_id", "accession", "source_file", "source_row", "source_hash", "ingest_run"}


def keyed_hash(key: bytes, patient_id: str) -> str:
    return hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()


def build_analytics(warehouse: Path, tables: tuple[str, ...], target: Path, key: bytes) -> None:
    """Write the pseudonymised copy of `tables` from `warehouse` into the DuckDB file `target`."""
    target.unlink(missing_ok=True)
    with duckdb.connect(str(target)) as con:
        def pseudonym(ids: pa.Array) -> pa.Array:
            # The key lives only in this closure: it never reaches SQL text, a table or a log.
            return pa.array([None if i is None else keyed_hash(key, i) for i in ids.to_pylist()], pa.string())

        con.create_function("pseudonym", pseudonym, ["VARCHAR"], "VARCHAR", type="arrow")
        con.execute("attach $path as identified (read_only)", {"path": str(warehouse)})
        for table in tables:
            columns = [name for (name,) in con.execute(
                "select column_name from duckdb_columns() where database_name = 'identified' "
                "and schema_name = 'main' and table_name = $t order by column_index", {"t": table}).fetchall()]
            # quoted: a column may be named like an SQL keyword (treatment_response."window")
            kept = ", ".join('"' + name.replace('"', '""') + '"' for name in columns if name not in WITHHELD_COLUMNS)
            if "patient_id" not in columns:  # counts (cohort_counts): nothing to pseudonymise
                con.execute(f"create table {table} as select {kept} from identified.{table}")
                continue
            con.execute(
                f"create table {table} as select pseudonym(patient_id) as patient_key, {kept} from identified.{table}"
            )
            con.execute(f"comment on column {table}.patient_key is 'Keyed hash (HMAC-SHA-256) of the patient "
                        "identifier; the key is held outside the data.'")
        con.execute("detach identified")
        con.execute("checkpoint")
