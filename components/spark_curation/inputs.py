"""Finding the raw files, checking their headers and fingerprinting them.

Everything here runs before Spark starts, so a fatal input problem is
reported without touching the output directory.
"""
import csv
import glob
import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence, Union

from components.spark_curation.contract import (
    CurationError,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
)
from models import features

_ENCODING = "utf-8-sig"  # tolerates the byte-order mark spreadsheet exports add


def resolve_inputs(input_paths: Union[str, Sequence[str]]) -> List[str]:
    """Expands paths and globs into absolute file paths, sorted.

    The sorted order is the "first occurrence" order used for duplicates.

    Args:
      input_paths: a path or glob, or a list of them.

    Returns:
      The distinct matching files, sorted by absolute path.

    Raises:
      CurationError: a path or glob matches no file.
    """
    patterns = [input_paths] if isinstance(input_paths, str) else list(input_paths)
    if not patterns:
        raise CurationError("No input path given.")
    files = set()
    for pattern in patterns:
        matched = [p for p in glob.glob(pattern) if os.path.isfile(p)]
        if not matched:
            raise CurationError(f"Input '{pattern}' matches no file.")
        files.update(os.path.abspath(p) for p in matched)
    return sorted(files)


def read_header(path: str) -> List[str]:
    """The column names of CSV `path`, after checking it has a data row.

    Raises:
      CurationError: the file cannot be read, has no header or no data row,
        or repeats a column name.
    """
    try:
        with open(path, newline="", encoding=_ENCODING) as f:
            header_line = f.readline()
            has_data = any(line.strip() for line in f)
    except (OSError, UnicodeDecodeError) as error:
        raise CurationError(f"Cannot read input file {path}: {error}") from error
    if not header_line.strip():
        raise CurationError(f"Input file {path} is empty (no header line).")
    if not has_data:
        raise CurationError(f"Input file {path} has a header but no data rows.")
    header = [name.strip() for name in next(csv.reader([header_line]))]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise CurationError(f"Input file {path} repeats column(s): {', '.join(repeated)}.")
    return header


def check_columns(path: str, header: List[str], station: Optional[str]) -> None:
    """Raises CurationError naming the file and every missing required column."""
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if features.STATION_KEY not in header and not station:
        missing.append(f"{features.STATION_KEY} (absent, and no station= was given)")
    if missing:
        raise CurationError(
            f"Input file {path} is missing required column(s): {', '.join(missing)}. "
            f"Required: {', '.join(REQUIRED_COLUMNS)} (optional: "
            f"{', '.join(OPTIONAL_COLUMNS)}); found: {', '.join(header)}."
        )


def read_headers(files: List[str], station: Optional[str]) -> Dict[str, List[str]]:
    """{file: header} for files that all pass `read_header` and `check_columns`."""
    headers = {}
    for path in files:
        headers[path] = read_header(path)
        check_columns(path, headers[path], station)
    return headers


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inputs_fingerprint(file_digests: Dict[str, str], station: Optional[str]) -> str:
    """sha256 identifying what a run curates: file contents in order, and `station`.

    Paths are left out so that moving unchanged data does not re-curate it;
    the station default is in because it changes the curated rows.
    """
    identity = {
        "contents": [file_digests[path] for path in sorted(file_digests)],
        "station": station,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
