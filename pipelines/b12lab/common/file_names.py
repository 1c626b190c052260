"""How logs and the report name an export file: a name that may carry a person's name is shown by its pattern."""
import re

# A per-patient export names its file after the person: Synthea writes one Bundle per patient as
# Given123_Family456_<uuid>.json. A file name of words joined by underscores and ending in an id (with a digit)
# may carry a name: logs and the report show it by this pattern instead. The lake keeps the name as it came.
_PERSONAL_FILE_NAME = re.compile(
    r"^(?:[^\W\d_][^\W_]*_){1,4}(?=[0-9A-Za-z-]*[0-9])[0-9A-Za-z-]+[.]json(?:[.]gz)?(#[A-Za-z]+)?$"
)
PERSONAL_FILE_PATTERN = "<Given>_<Family>_<id>.json"


def reported_name(source_file: str) -> str:
    """A source file's name for logs and the report: as it is, or by pattern when it may carry a person's
    name (the resource type of a Bundle's part is kept)."""
    match = _PERSONAL_FILE_NAME.match(source_file)
    if match is None:
        return source_file
    return PERSONAL_FILE_PATTERN + (match.group(1) or "")
