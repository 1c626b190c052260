"""Bytes into text: what a file's first bytes say it is, and its header.

A file is read as gzip when its first bytes say so, whatever its name; a PDF, zip or Office document named
*.csv is recognised by its signature; a UTF-16 file (Excel's "Unicode text") is converted to UTF-8, and a
file that is not valid UTF-8 (an old LIS writing Latin-1) is converted line by line, each line that is not
valid UTF-8 decoded as Latin-1, so 0xB5 is the micro sign. The header gives the delimiter (comma, semicolon,
tab or bar, when the header names every column of the kind with it) and the column names.

All of it is decided from the bytes, never from DuckDB's error messages, which quote the record (and so may
hold a patient id).
"""
from __future__ import annotations

import codecs
import gzip
import json
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from b12lab.ingest.contract import ExportKind

# What the gzip module raises on a gzip stream that ends early or is corrupt.
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)

# Delimiters a header may be written with. Comma is the contract; another is used only when the header names
# every column of the export kind with it, so nothing is guessed.
_DELIMITERS = (",", ";", "\t", "|")

# First bytes of files that get renamed *.csv by mistake: not text, so not one record can be read from them.
NOT_TEXT_SIGNATURES = {
    b"%PDF-": "a PDF document",
    b"PK\x03\x04": "a zip archive or an Office Open XML workbook",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "an old Office document (.xls)",
    b"\x1f\x8b": "gzip data inside gzip",
}


def compression_of(path: Path) -> str:
    """'gzip' when the file starts with the gzip magic number, whatever its name; else 'none'."""
    with path.open("rb") as stream:
        return "gzip" if stream.read(2) == b"\x1f\x8b" else "none"


def open_bytes(path: Path, compression: str):
    return gzip.open(path, "rb") if compression == "gzip" else path.open("rb")


def read_json_document(path: Path) -> object | None:
    """A whole JSON file (plain or gzip), or None when it is not one."""
    try:
        with open_bytes(path, compression_of(path)) as stream:
            return json.loads(stream.read().decode("utf-8-sig"))
    except (ValueError, OSError, *GZIP_ERRORS):
        return None


def read_text(path: Path) -> str:
    """A file's text (plain or gzip, as much of a damaged gzip stream as can be read), undecodable bytes
    replaced."""
    chunks = []
    with open_bytes(path, compression_of(path)) as stream:
        try:
            while block := stream.read1(1 << 20) if hasattr(stream, "read1") else stream.read(1 << 20):
                chunks.append(block)
        except GZIP_ERRORS:
            pass
    return b"".join(chunks).decode("utf-8-sig", errors="replace")


def ends_with_line_break(path: Path) -> bool:
    with path.open("rb") as stream:
        if stream.seek(0, 2) == 0:
            return True
        stream.seek(-1, 2)
        return stream.read(1) in (b"\n", b"\r")


def first_bytes(path: Path, size: int = 1 << 12) -> bytes:
    with path.open("rb") as stream:
        return stream.read(size)


def read_header(path: Path, delimiter: str = ",", compression: str | None = None) -> list[str]:
    """The header's column names, lower-cased, BOM and surrounding spaces and quotes removed."""
    compression = compression or compression_of(path)
    with open_bytes(path, compression) as raw:
        stream = codecs.getreader("utf-8-sig")(raw, errors="replace")
        try:
            first_line = stream.readline()
        except GZIP_ERRORS:
            first_line = ""
    return [name.strip().strip('"').strip().lower() for name in first_line.rstrip("\r\n").split(delimiter)]


def sniff_delimiter(path: Path, kind: ExportKind, compression: str) -> str:
    """The delimiter with which the header names every column of the kind; comma if none does."""
    for delimiter in _DELIMITERS:
        if set(kind.columns) <= set(read_header(path, delimiter, compression)):
            return delimiter
    return ","


def decompress(source: Path, target: Path) -> str:
    """Decompress a gzip file to `target`; return a one-line problem, or '' when the whole stream was sound.

    Here rather than in DuckDB, which does not check the gzip CRC: a stream damaged in the middle reads as
    garbage records there (patient ids among them). A stream that ends early or is corrupt stops the copy;
    what was decompressed before is kept, to be quarantined.
    """
    with gzip.open(source, "rb") as stream, target.open("wb") as out:
        try:
            # read1: a failing read then loses nothing that was decompressed before it.
            while block := stream.read1(1 << 20):
                out.write(block)
        except GZIP_ERRORS:
            return "the gzip stream is truncated or corrupt"
    return ""


def to_utf8(source: Path, target: Path, utf16: bool) -> None:
    """Copy a text file to `target` as UTF-8.

    Line by line: a line that is valid UTF-8 is copied as it is, any other line is decoded as Latin-1 (every
    byte is a Latin-1 character, so nothing is dropped; a file mixing both keeps each line right). A file
    starting with a UTF-16 byte order mark is decoded as UTF-16.
    """
    with source.open("rb") as stream, target.open("wb") as out:
        if utf16:
            text = codecs.getreader("utf-16")(stream, errors="replace")
            for chunk in iter(lambda: text.read(1 << 20), ""):
                out.write(chunk.encode("utf-8"))
            return
        for number, line in enumerate(stream):
            if number == 0 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8):]
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                line = line.decode("latin-1").encode("utf-8")
            out.write(line)
