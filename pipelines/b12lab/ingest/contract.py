"""The export contract: which files of a drop folder are exports, of which kind, with which columns.

An export kind (labs, patients, diagnoses, medications) names the columns its CSV must have, the SQL row model
that reads it and the lake table its accepted rows go to (whose columns b12lab/lake/lake.py declares). A file's kind comes from its name:
labs*.csv[.gz], patients*.csv, ...; a FHIR Bulk Data NDJSON file is named after its resource type
(Observation*.ndjson[.gz] -> labs, ...), and a FHIR Bundle (*.json) is one export per resource type it holds.
A lab CSV in a site's own layout is an export through its mapping (b12lab/ingest/mapping.py).

discover_exports lists a drop folder's exports and the files it ignores: files that are no export, and the
NDJSON files a $export manifest does not list. Medication and Organization NDJSON files are read for
references only, and a mapping's dictionary file with its exports: neither is an export nor ignored.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from b12lab.common.file_names import reported_name
from b12lab.ingest.decoding import read_json_document, read_text
from b12lab.ingest.digests import DigestCache
from b12lab.ingest.mapping import LabMapping, MappingError
from b12lab.lake.lake import DATA_SCHEMAS, LINEAGE_SCHEMA


@dataclass(frozen=True)
class ExportKind:
    name: str
    table: str
    columns: tuple[str, ...]
    sql_file: str
    # Columns a CSV may have and need not: a file without them is read with the column empty.
    optional_columns: tuple[str, ...] = ()

    @property
    def raw_columns(self) -> tuple[str, ...]:
        """Every column of the kind a CSV header can name: the required ones, then the optional ones."""
        return self.columns + self.optional_columns

    @property
    def lake_columns(self) -> tuple[str, ...]:
        """The lake columns written for accepted rows, in order, after which lineage columns follow: the lake
        table's columns (b12lab/lake/lake.py, DATA_SCHEMAS) less the lineage."""
        return tuple(name for name in DATA_SCHEMAS[self.table].names if name not in LINEAGE_SCHEMA.names)


LAB_COLUMNS = (
    "patient_id", "accession", "loinc", "local_code", "test_name", "result_value", "unit",
    "reference_range", "abnormal_flag", "status", "collected_at", "resulted_at", "performing_lab",
)

EXPORT_KINDS: dict[str, ExportKind] = {
    "labs": ExportKind(
        name="labs",
        table="lab_results",
        columns=LAB_COLUMNS,
        sql_file="lab_rows.sql",
    ),
    "patients": ExportKind(
        name="patients",
        table="patients",
        columns=("patient_id", "birth_date", "sex", "practice"),
        sql_file="patient_rows.sql",
        optional_columns=("death_date",),
    ),
    "diagnoses": ExportKind(
        name="diagnoses",
        table="diagnoses",
        columns=("patient_id", "code_system", "code", "recorded_at"),
        sql_file="diagnosis_rows.sql",
    ),
    "medications": ExportKind(
        name="medications",
        table="medications",
        columns=("patient_id", "drug", "atc_code", "route", "dose", "start_date", "end_date"),
        sql_file="medication_rows.sql",
    ),
}

# FHIR Bulk Data ($export) writes one resource type per NDJSON file, named after it (Observation.ndjson,
# Observation-2.ndjson.gz). Each resource type is flattened onto the columns of one export kind.
FHIR_RESOURCES: dict[str, str] = {
    "Observation": "labs",
    "Patient": "patients",
    "Condition": "diagnoses",
    "MedicationRequest": "medications",
    "MedicationStatement": "medications",
}
# The resource type is the start of the name, followed by anything but a letter (so ObservationDefinition
# is not an Observation file).
_FHIR_FILE_NAME = re.compile(
    rf"^({'|'.join(FHIR_RESOURCES)})(?![a-z]).*[.]ndjson(?:[.]gz)?$", re.IGNORECASE
)


@dataclass(frozen=True)
class ExportFile:
    path: Path
    kind: ExportKind
    source_hash: str
    # NDJSON files only: the FHIR resource type the file holds. None for a CSV file.
    fhir_resource: str | None = None
    # A lab CSV in a site's own layout: the mapping that translates it into the lab contract.
    mapping: LabMapping | None = None
    # A FHIR Bundle (one JSON document) holds several resource types: each is an export of its own, named
    # <file>#<resource type>, whose records are the Bundle's entries of that type.
    bundle: bool = False

    @property
    def name(self) -> str:
        return f"{self.path.name}#{self.fhir_resource}" if self.bundle else self.path.name

    @property
    def display_name(self) -> str:
        """The name as logs and the report show it: a name that may carry a person's name, by pattern."""
        return reported_name(self.name)

    @property
    def format(self) -> str:
        return "csv" if self.fhir_resource is None else "ndjson"


def files_label(exports: list[ExportFile]) -> str:
    """Several files as logs name them: the first by its display name (a per-patient file by its pattern, never
    a name that could be a person's), and how many more."""
    return exports[0].display_name + (f" and {len(exports) - 1} more" if len(exports) > 1 else "")


def fhir_resource_of(path: Path) -> str | None:
    """Observation*.ndjson[.gz] -> Observation, ...; None for any other file."""
    match = _FHIR_FILE_NAME.match(path.name)
    if match is None:
        return None
    return next(resource for resource in FHIR_RESOURCES if resource.lower() == match.group(1).lower())


def export_kind_of(path: Path) -> ExportKind | None:
    """labs*.csv[.gz] -> labs, patients*.csv -> patients, ..., Observation*.ndjson[.gz] -> labs, ...;
    anything else is not an export file."""
    resource = fhir_resource_of(path)
    if resource is not None:
        return EXPORT_KINDS[FHIR_RESOURCES[resource]]
    name = path.name.lower()
    if not (name.endswith(".csv") or name.endswith(".csv.gz")):
        return None
    for prefix, kind in EXPORT_KINDS.items():
        if name.startswith(prefix):
            return kind
    return None


# Resources that other resources reference and that are read only for that: a MedicationRequest's
# medicationReference, a Patient's managingOrganization. Their NDJSON files are not exports of their own.
REFERENCED_RESOURCES = ("Medication", "Organization")
REFERENCE_FILE_NAME = re.compile(
    rf"^({'|'.join(REFERENCED_RESOURCES)})(?![a-z]).*[.]ndjson(?:[.]gz)?$", re.IGNORECASE
)
_BUNDLE_FILE_NAME = re.compile(r".*[.](?:nd)?json(?:[.]gz)?$", re.IGNORECASE)
_NDJSON_FILE_NAME = re.compile(r".*[.]ndjson(?:[.]gz)?$", re.IGNORECASE)
MANIFEST_NAME = "manifest.json"
_RESOURCE_TYPE = re.compile(r'"resourceType"\s*:\s*"([A-Za-z]+)"')
_BUNDLE_OPENING = re.compile(r'\A\s*[{].*?"resourceType"\s*:\s*"Bundle"', re.DOTALL)


def is_ndjson_name(path: Path) -> bool:
    return bool(_NDJSON_FILE_NAME.match(path.name))


def _bundle_resource_types(path: Path) -> list[str]:
    """The resource types of FHIR_RESOURCES that a Bundle file holds, in FHIR_RESOURCES order; [] when the
    file is not a Bundle. An NDJSON file is a Bundle file when its first record is a Bundle (each line one).

    A Bundle that cannot be read whole (cut short in transfer) is still an export, so that its account names
    it as unreadable_file: its types are those its text names, or Observation when it ends before any entry
    (the file must be accounted for under some kind)."""
    if is_ndjson_name(path):
        return _ndjson_bundle_resource_types(path)
    document = read_json_document(path)
    if isinstance(document, dict):
        if document.get("resourceType") != "Bundle":
            return []
        present = {(entry.get("resource") or {}).get("resourceType")
                   for entry in document.get("entry") or [] if isinstance(entry, dict)}
        return [resource for resource in FHIR_RESOURCES if resource in present]
    text = read_text(path)
    if not _BUNDLE_OPENING.match(text[:1 << 16]):
        return []
    present = set(_RESOURCE_TYPE.findall(text))
    return [resource for resource in FHIR_RESOURCES if resource in present] or ["Observation"]


def _ndjson_bundle_resource_types(path: Path) -> list[str]:
    """The resource types an NDJSON file of Bundles names (its first record a Bundle); [] for any other."""
    first = next((line for line in read_text(path).splitlines() if line.strip()), "")
    try:
        document = json.loads(first)
    except ValueError:
        return []
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        return []
    present = set(_RESOURCE_TYPE.findall(read_text(path)))
    return [resource for resource in FHIR_RESOURCES if resource in present]


def read_manifest(input_dir: Path) -> dict | None:
    """The Bulk Data $export manifest of a drop folder: the file names it lists and its transactionTime;
    None when there is none (or it is not a manifest)."""
    path = input_dir / MANIFEST_NAME
    document = read_json_document(path) if path.is_file() else None
    if not isinstance(document, dict) or not isinstance(document.get("output"), list):
        return None
    names = [str(item.get("url", "")).rstrip("/").rsplit("/", 1)[-1]
             for item in document["output"] if isinstance(item, dict)]
    return {"files": [name for name in names if name], "transaction_time": document.get("transactionTime")}


EXPORT_BY_NAME, IGNORED_BY_NAME = "export", "ignored"  # what known_by_name says of a file


def known_by_name(name: str, mapping: LabMapping | None = None) -> str | None:
    """What a drop file is by its name alone, as discover_exports would take it: "export" (an export whose
    kind the name says), "ignored" (no export and nothing read with the exports), or None when its content or
    the folder's other files decide (a FHIR Bundle, a Medication or Organization NDJSON, a $export manifest, a
    mapping's dictionary). A drop on an object store downloads only what this does not settle."""
    path = Path(name)
    if name == MANIFEST_NAME or REFERENCE_FILE_NAME.match(name):
        return None
    if mapping is not None:
        if mapping.dictionary is not None and name == Path(mapping.dictionary.file).name:
            return None
        if mapping.matches(path):
            return EXPORT_BY_NAME
    if export_kind_of(path) is not None:
        return EXPORT_BY_NAME
    return None if _BUNDLE_FILE_NAME.match(name) else IGNORED_BY_NAME


def discover_exports(input_dir: Path, mapping: LabMapping | None = None,
                     digests: DigestCache | None = None) -> tuple[list[ExportFile], list[Path]]:
    """The export files of a drop folder in name order, and the files that are not exports.

    With a mapping (--mapping), the files its pattern names are lab exports in the site's layout, and its
    dictionary file is read with them (neither an export nor ignored); a dictionary that is nowhere to be
    found is refused before any data is read (MappingError).

    A FHIR Bundle (*.json) gives one export per resource type it holds. Medication and Organization NDJSON
    files are read for references only (neither an export nor ignored). When the folder holds a $export
    manifest.json, the NDJSON files it does not list are not part of that export and are ignored.

    Each export's source_hash is its content's sha256: from `digests` when the file is unchanged since it was
    last hashed (b12lab.ingest.digests), computed otherwise.
    """
    content_hash = (digests or DigestCache.none()).digest
    manifest = read_manifest(input_dir)
    listed = set(manifest["files"]) if manifest else None
    dictionary = mapping.dictionary_path(input_dir) if mapping is not None else None
    exports, ignored = [], []
    for path in sorted(p for p in input_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.name == MANIFEST_NAME and manifest is not None:
            continue
        if dictionary is not None and path.resolve() == dictionary.resolve():
            continue
        if mapping is not None and mapping.matches(path):
            if mapping.dictionary is not None and dictionary is None:
                raise MappingError(f"mapping {mapping.name}: key 'dictionary.file': {mapping.dictionary.file} "
                                   "is neither in the drop folder nor beside the mapping")
            exports.append(ExportFile(path=path, kind=EXPORT_KINDS["labs"], source_hash=content_hash(path),
                                      mapping=mapping))
            continue
        is_ndjson = fhir_resource_of(path) is not None or REFERENCE_FILE_NAME.match(path.name)
        if listed is not None and is_ndjson and path.name not in listed:
            ignored.append(path)
            continue
        if REFERENCE_FILE_NAME.match(path.name):
            continue
        kind = export_kind_of(path)
        if kind is None and _BUNDLE_FILE_NAME.match(path.name):
            resources = _bundle_resource_types(path)
            if resources:
                file_hash = content_hash(path)
                for resource in resources:
                    part_hash = hashlib.sha256(f"{file_hash}:{resource}".encode()).hexdigest()
                    exports.append(ExportFile(path=path, kind=EXPORT_KINDS[FHIR_RESOURCES[resource]],
                                              source_hash=part_hash, fhir_resource=resource, bundle=True))
                continue
        if kind is None:
            ignored.append(path)
        else:
            exports.append(ExportFile(path=path, kind=kind, source_hash=content_hash(path),
                                      fhir_resource=fhir_resource_of(path)))
    return exports, ignored
