"""A site's own lab CSV layout, read through a mapping file (`b12lab run --mapping FILE|NAME`), without code.

A mapping (YAML, documented in README "A site's own lab CSV: mapping files") says which files it applies to,
how they are written (delimiter, date format), which column or constant gives each field of the lab contract,
and how the site's codes, units, censored values, statuses and shifted dates read. Its files are translated
into the contract's fields (the temp table raw_file), after which lab_rows.sql applies exactly as to a file in
the contract layout: nothing is guessed, and every row is still accepted, quarantined or dropped by a rule.

A mapping is checked whole before any data is read; a bad one is refused with one line naming the key.
"""
from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from b12lab.common.paths import MAPPINGS_DIR, REFERENCE_DIR


# The lab contract's fields (README "Lab CSV contract"), in file order.
LAB_FIELDS = (
    "patient_id", "accession", "loinc", "local_code", "test_name", "result_value", "unit",
    "reference_range", "abnormal_flag", "status", "collected_at", "resulted_at", "performing_lab",
)
# Without these no row can be accepted: a mapping must give them (a column or, for a code, a dictionary).
REQUIRED_FIELDS = ("patient_id", "result_value", "collected_at")
DATE_FIELDS = ("collected_at", "resulted_at")
COMPARATORS = ("<", "<=", ">", ">=")
_KEYS = ("name", "description", "files", "delimiter", "date_format", "date_shift", "columns", "constants",
         "dictionary", "local_codes", "units", "censoring", "status_default")
_DICTIONARY_KEYS = ("file", "key", "joins", "columns", "delimiter")
_DATE_SHIFT_KEYS = ("years", "days")


class MappingError(ValueError):
    """A mapping file that cannot be used: the message names the file and the key."""


class UnknownMapping(MappingError):
    """A mapping name that is neither a shipped mapping nor a file: a usage error of `--mapping`."""


@dataclass(frozen=True)
class Dictionary:
    """A code dictionary file joined to the data (MIMIC's D_LABITEMS gives LOINC and label per ITEMID)."""
    file: str
    key: str                                   # the dictionary's column holding the code
    joins: str                                 # the lab field (after mapping) the key is matched to
    columns: tuple[tuple[str, str], ...]       # lab field -> dictionary column
    delimiter: str = ","


@dataclass(frozen=True)
class LabMapping:
    name: str
    source: str                                # where the mapping came from (for messages)
    files: str                                 # file name pattern (glob, case-insensitive)
    delimiter: str
    date_formats: tuple[tuple[str, tuple[str, ...]], ...]  # date field -> strptime formats, tried in order
    shift_years: int
    shift_days: int
    columns: tuple[tuple[str, tuple[str, ...]], ...]  # lab field -> source columns, the first non-empty wins
    range_bounds: bool                         # reference_range's two columns are its low and high bounds
    constants: tuple[tuple[str, str], ...]     # lab field -> constant text
    dictionary: Dictionary | None
    local_codes: tuple[tuple[str, str], ...]   # local code -> analyte
    units: tuple[tuple[str, str], ...]         # unit as written -> unit spelling the contract knows
    censoring: tuple[tuple[str, str], ...]     # text before the number -> comparator
    status_default: str | None

    def matches(self, path: Path) -> bool:
        return fnmatch.fnmatch(path.name.lower(), self.files.lower())

    def source_columns(self) -> list[str]:
        """The columns of the data file that the mapping reads."""
        return [column for _, columns in self.columns for column in columns]

    def formats_of(self, field: str) -> tuple[str, ...]:
        """The strptime formats a date field is read with, in order (ISO 8601 is always read too)."""
        return dict(self.date_formats).get(field, ())

    def dictionary_path(self, input_dir: Path) -> Path | None:
        """The dictionary file: in the drop folder, else beside the mapping file."""
        if self.dictionary is None:
            return None
        for folder in (input_dir, Path(self.source).parent):
            candidate = folder / self.dictionary.file
            if candidate.is_file():
                return candidate
        return None


def _fail(source: str, key: str, problem: str) -> MappingError:
    return MappingError(f"mapping {source}: key '{key}': {problem}")


def _text_map(source: str, key: str, value, allowed_values=None) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _fail(source, key, "must be a mapping of text to text")
    pairs = []
    for name, target in value.items():
        if not isinstance(name, (str, int)) or not isinstance(target, (str, int)) or str(name).strip() == "":
            raise _fail(source, f"{key}.{name}", "must map a text to a text")
        if allowed_values is not None and str(target) not in allowed_values:
            raise _fail(source, f"{key}.{name}", f"'{target}' is not one of {', '.join(sorted(allowed_values))}")
        pairs.append((str(name), str(target)))
    return tuple(pairs)


def _analytes() -> set[str]:
    with (REFERENCE_DIR / "ref_analytes.csv").open(encoding="utf-8") as stream:
        return {row["analyte"] for row in csv.DictReader(stream)}


def unit_key(unit: str) -> str:
    """A unit as lab_rows.sql matches it to ref_units.unit: lower case, no spaces, the micro sign and Greek mu
    as u, mcg as ug."""
    return unit.strip().lower().replace(" ", "").replace("\u00b5", "u").replace("\u03bc", "u").replace("mcg", "ug")


def _unit_spellings() -> dict[str, str]:
    """Every unit ref_units.csv knows, by its key, with the spelling it is shown in."""
    with (REFERENCE_DIR / "ref_units.csv").open(encoding="utf-8") as stream:
        return {row["unit"]: row["unit_canonical_spelling"] for row in csv.DictReader(stream)}


def _status_spellings() -> set[str]:
    with (REFERENCE_DIR / "ref_result_statuses.csv").open(encoding="utf-8") as stream:
        return {row["status_raw"] for row in csv.DictReader(stream)}


def resolve_mapping_path(name_or_file: str) -> Path:
    """A mapping file path, or the name of a shipped mapping (b12lab/ingest/mappings/<name>.yaml)."""
    path = Path(name_or_file)
    # A file is a file; a folder that happens to bear a shipped mapping's name (a drop folder called mimic3 in
    # the working directory) does not hide the shipped mapping.
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise MappingError(f"mapping file not found: {name_or_file}")
        return path
    shipped = MAPPINGS_DIR / f"{name_or_file}.yaml"
    if not shipped.is_file():
        names = ", ".join(sorted(p.stem for p in MAPPINGS_DIR.glob("*.yaml")))
        raise UnknownMapping(f"no mapping named '{name_or_file}' (shipped: {names}; or give a .yaml file)")
    return shipped


def load_mapping(name_or_file: str | None) -> LabMapping | None:
    """The mapping, checked whole; None when no mapping is given. Raises MappingError naming the key."""
    if name_or_file is None:
        return None
    path = resolve_mapping_path(str(name_or_file))
    source = path.name
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise MappingError(f"mapping {source}: not valid YAML ({type(error).__name__})") from error
    if not isinstance(document, dict):
        raise MappingError(f"mapping {source}: must be a YAML mapping of keys")
    for key in document:
        if key not in _KEYS:
            raise _fail(source, str(key), f"unknown key (known: {', '.join(_KEYS)})")
    files = document.get("files")
    if not isinstance(files, str) or not files.strip():
        raise _fail(source, "files", "required: the file name pattern, for example 'LABEVENTS*.csv*'")
    delimiter = document.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in ('"', "\n", "\r"):
        raise _fail(source, "delimiter", "must be one character (',' ';' '|' or a tab)")
    date_formats = _date_formats(source, document.get("date_format"))
    shift = document.get("date_shift") or {}
    if not isinstance(shift, dict):
        raise _fail(source, "date_shift", "must be a mapping with years and/or days")
    for key, value in shift.items():
        if key not in _DATE_SHIFT_KEYS:
            raise _fail(source, f"date_shift.{key}", "unknown key (known: years, days)")
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(source, f"date_shift.{key}", "must be a whole number")
    columns, range_bounds = _columns(source, document.get("columns"))
    constants = _text_map(source, "constants", document.get("constants"))
    for key, pairs in (("columns", columns), ("constants", constants)):
        for field, _ in pairs:
            if field not in LAB_FIELDS:
                raise _fail(source, f"{key}.{field}", f"not a field of the lab contract ({', '.join(LAB_FIELDS)})")
    both = {f for f, _ in columns} & {f for f, _ in constants}
    if both:
        raise _fail(source, f"constants.{sorted(both)[0]}", "given both as a column and as a constant")
    dictionary = None
    if document.get("dictionary") is not None:
        raw = document["dictionary"]
        if not isinstance(raw, dict):
            raise _fail(source, "dictionary", "must be a mapping (file, key, joins, columns)")
        for key in raw:
            if key not in _DICTIONARY_KEYS:
                raise _fail(source, f"dictionary.{key}", f"unknown key (known: {', '.join(_DICTIONARY_KEYS)})")
        for key in ("file", "key", "joins"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise _fail(source, f"dictionary.{key}", "required (a text)")
        if raw["joins"] not in {f for f, _ in columns}:
            raise _fail(source, "dictionary.joins", f"'{raw['joins']}' is not a field given by columns")
        dictionary_columns = _text_map(source, "dictionary.columns", raw.get("columns"))
        if not dictionary_columns:
            raise _fail(source, "dictionary.columns", "required: the lab fields the dictionary gives")
        for field, _ in dictionary_columns:
            if field not in LAB_FIELDS:
                raise _fail(source, f"dictionary.columns.{field}", "not a field of the lab contract")
        dictionary_delimiter = raw.get("delimiter", ",")
        if not isinstance(dictionary_delimiter, str) or len(dictionary_delimiter) != 1:
            raise _fail(source, "dictionary.delimiter", "must be one character")
        dictionary = Dictionary(file=raw["file"], key=raw["key"], joins=raw["joins"],
                                columns=dictionary_columns, delimiter=dictionary_delimiter)
    given = {f for f, _ in columns} | {f for f, _ in constants} | \
        ({f for f, _ in dictionary.columns} if dictionary else set())
    for field in REQUIRED_FIELDS:
        if field not in given:
            raise _fail(source, f"columns.{field}", "required: the column that holds it")
    if not given & {"loinc", "local_code"}:
        raise _fail(source, "columns.loinc", "a code is required: give loinc or local_code (or a dictionary)")
    local_codes = _text_map(source, "local_codes", document.get("local_codes"), _analytes())
    units = _text_map(source, "units", document.get("units"))
    known_units = _unit_spellings()
    for written, unit in units:
        if unit_key(unit) not in known_units:
            shown = ", ".join(sorted(set(known_units.values()), key=str.lower))
            raise _fail(source, f"units.{written}", f"'{unit}' is not a unit of ref_units.csv ({shown}): every "
                        "record in it would be quarantined as unknown_unit")
    censoring = _text_map(source, "censoring", document.get("censoring"), set(COMPARATORS))
    status_default = document.get("status_default")
    if status_default is not None and not isinstance(status_default, str):
        raise _fail(source, "status_default", "must be a status text such as F")
    if status_default is not None and status_default.strip().lower() not in _status_spellings():
        raise _fail(source, "status_default", f"'{status_default}' is not a status of ref_result_statuses.csv "
                    "(F, C, A, P, X, W, D, final, amended, ...)")
    name = document.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise _fail(source, "name", "must be a text")
    return LabMapping(
        name=name, source=str(path), files=files.strip(), delimiter=delimiter, date_formats=date_formats,
        shift_years=int(shift.get("years", 0)), shift_days=int(shift.get("days", 0)), columns=columns,
        range_bounds=range_bounds, constants=constants, dictionary=dictionary, local_codes=local_codes, units=units, censoring=censoring,
        status_default=status_default,
    )


def check_mapping_files(mapping: LabMapping, input_dir: Path) -> None:
    """The files a mapping names, checked before any data is read: its dictionary is in the drop folder or beside
    the mapping, and its header has the key and the columns the mapping takes from it. Raises MappingError, one
    line naming the mapping file and the key."""
    if mapping.dictionary is None:
        return
    source = Path(mapping.source).name
    path = mapping.dictionary_path(input_dir)
    if path is None:
        raise _fail(source, "dictionary.file", f"{mapping.dictionary.file} is neither in the drop folder "
                                               f"({input_dir}) nor beside the mapping")
    # The header only, as the reader will see it: no record is read here.
    with path.open(encoding="utf-8-sig", errors="replace") as stream:
        header = [name.strip().strip('"').strip().lower()
                  for name in stream.readline().rstrip("\r\n").split(mapping.dictionary.delimiter)]
    key = mapping.dictionary.key
    if key.lower() not in header:
        raise _fail(source, "dictionary.key", f"{path.name} has no column {key}")
    for field, column in mapping.dictionary.columns:
        if column.lower() not in header:
            raise _fail(source, f"dictionary.columns.{field}", f"{path.name} has no column {column}")


def _strptime_format(source: str, key: str, value) -> str:
    """A strptime format that reads back a whole date (a format without the day, month or year is refused)."""
    if not isinstance(value, str) or "%" not in value:
        raise _fail(source, key, "must be a strptime format such as '%Y-%m-%d %H:%M:%S'")
    try:
        sample = datetime(2024, 3, 5, 9, 7, 2)
        if datetime.strptime(sample.strftime(value), value).date() != sample.date():
            raise ValueError
    except ValueError as error:
        raise _fail(source, key, f"'{value}' does not name a whole date") from error
    return value


def _format_list(source: str, key: str, value) -> tuple[str, ...]:
    """One format, or a list of formats tried in order."""
    values = value if isinstance(value, list) else [value]
    if not values:
        raise _fail(source, key, "must name at least one format")
    return tuple(_strptime_format(source, f"{key}[{position}]" if isinstance(value, list) else key, item)
                 for position, item in enumerate(values))


def _date_formats(source: str, value) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """date_format: one format or a list for every date field, or a mapping of date field -> format or list."""
    if value is None:
        return ()
    if isinstance(value, dict):
        pairs = []
        for field, formats in value.items():
            if field not in DATE_FIELDS:
                raise _fail(source, f"date_format.{field}", f"not a date field ({', '.join(DATE_FIELDS)})")
            pairs.append((field, _format_list(source, f"date_format.{field}", formats)))
        return tuple(pairs)
    formats = _format_list(source, "date_format", value)
    return tuple((field, formats) for field in DATE_FIELDS)


# The source columns of a field given as a pair of bounds: reference_range: {low: COLUMN, high: COLUMN}.
RANGE_BOUNDS = ("low", "high")


def _columns(source: str, value) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], bool]:
    """columns: field -> a column, a list of columns (the first non-empty wins) or, for reference_range, the
    two columns of its bounds ({low: ..., high: ...}, kept in that order). Returns the pairs, and whether
    reference_range is given by its bounds."""
    if value is None:
        return (), False
    bounds = False
    if not isinstance(value, dict):
        raise _fail(source, "columns", "must be a mapping of field -> column")
    pairs = []
    for field, given in value.items():
        key = f"columns.{field}"
        if isinstance(given, dict):
            if field != "reference_range" or set(given) != set(RANGE_BOUNDS):
                raise _fail(source, key, "only reference_range takes two columns, as {low: COLUMN, high: COLUMN}")
            names = [given[bound] for bound in RANGE_BOUNDS]
            bounds = True
        elif isinstance(given, list):
            if not given:
                raise _fail(source, key, "must name at least one column")
            names = given
        else:
            names = [given]
        for name in names:
            if not isinstance(name, (str, int)) or isinstance(name, bool) or str(name).strip() == "":
                raise _fail(source, key, "must name a column (a text)")
        pairs.append((str(field), tuple(str(name) for name in names)))
    return tuple(pairs), bounds


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def raw_file_sql(mapping: LabMapping, source_columns: dict[str, str], has_dictionary: bool) -> str:
    """The SELECT that makes raw_file (the contract's text fields) from mapped_source (the file as read,
    one column per header name, lower-cased) and, when given, mapped_dictionary (key, then the dictionary's
    fields). source_columns maps a lower-cased header name to its mapped_source column."""
    columns = dict(mapping.columns)
    constants = dict(mapping.constants)
    dictionary_fields = dict(mapping.dictionary.columns) if (mapping.dictionary and has_dictionary) else {}

    def source(name: str) -> str:
        return f"source.{_identifier(source_columns[name.lower()])}"

    def column(field: str) -> str:
        names = [source(name) for name in columns[field]]
        if len(names) == 1:
            return names[0]
        # Null when the record is too short to hold any of them (malformed), as for one column.
        missing = " or ".join(f"{name} is null" for name in names)
        if field == "reference_range" and mapping.range_bounds:
            low, high = (f"trim({name})" for name in names)
            return (f"case when {missing} then null when {low} = '' and {high} = '' then '' "
                    f"when {low} = '' then '<' || {high} when {high} = '' then '>' || {low} "
                    f"else {low} || '-' || {high} end")
        # The first column that is not empty.
        first = ", ".join(f"nullif(trim({name}), '')" for name in names)
        return f"case when {missing} then null else coalesce({first}, '') end"

    expressions = {}
    for field in LAB_FIELDS:
        if field in columns:
            expression = column(field)
        elif field in constants:
            expression = _literal(constants[field])
        else:
            expression = "''"
        if field in dictionary_fields:
            expression = f"coalesce(nullif(trim({expression}), ''), dictionary.{_identifier(field)}, '')"
        # A mapped column stays null when the record is too short to have it (lab_rows: malformed_row).
        expressions[field] = expression if field in columns and field not in dictionary_fields \
            else f"coalesce({expression}, '')"
    if mapping.censoring:
        value = f"trim({expressions['result_value']})"
        cases = " ".join(
            f"when starts_with(upper({value}), {_literal(text.upper())}) "
            f"then {_literal(comparator)} || trim(substr({value}, {len(text) + 1}))"
            for text, comparator in sorted(mapping.censoring, key=lambda pair: -len(pair[0]))
        )
        expressions["result_value"] = f"case {cases} else {expressions['result_value']} end"
    if mapping.units:
        cases = " ".join(f"when {_literal(spelling.strip().lower())} then {_literal(unit)}"
                         for spelling, unit in mapping.units)
        expressions["unit"] = f"case lower(trim({expressions['unit']})) {cases} else {expressions['unit']} end"
    if mapping.status_default is not None:
        expressions["status"] = f"coalesce(nullif(trim({expressions['status']}), ''), {_literal(mapping.status_default)})"
    shift = ""
    if mapping.shift_years:
        shift += f" + to_years({int(mapping.shift_years)})"
    if mapping.shift_days:
        shift += f" + to_days({int(mapping.shift_days)})"
    for field in DATE_FIELDS:
        text = f"trim({expressions[field]})"
        formats = mapping.formats_of(field)
        if formats:
            # The mapping's formats in order, else ISO 8601 (unambiguous, so not a guess).
            tried = ", ".join(f"try_strptime({text}, {_literal(format)})" for format in formats)
            parsed = f"coalesce({tried}, iso_timestamp({text}))"
        elif shift:
            parsed = f"iso_timestamp({text})"
        else:
            continue
        # A date that does not read stays as it was written, for lab_rows to judge (unparseable_date, or an
        # unreadable resulted_at).
        expressions[field] = f"coalesce(strftime({parsed}{shift}, '%Y-%m-%dT%H:%M:%S'), {expressions[field]})"
    join = ""
    if dictionary_fields:
        join = (f"left join mapped_dictionary as dictionary "
                f"on dictionary.dictionary_key = trim({expressions[mapping.dictionary.joins]})")
    selected = ",\n        ".join(f"{expressions[field]} as {field}" for field in LAB_FIELDS)
    return f"""
with source as (
    select * from mapped_source
),

final as (
    select
        source.source_row,
        {selected},
        source._overflow,
        {_literal(mapping.name)} as local_code_system
    from source
    {join}
)

select * from final order by source_row
"""
