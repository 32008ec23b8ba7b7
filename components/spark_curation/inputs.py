"""Finding the raw files, checking their headers and fingerprinting them.

Everything here runs before Spark starts, so a fatal input problem is
reported without touching the output directory.
"""
import argparse
import csv
import dataclasses
import glob
import hashlib
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Union

from components.spark_curation.contract import (
    CurationError,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
)
from models import features

_ENCODING = "utf-8-sig"  # tolerates the byte-order mark spreadsheet exports add
# Quarantine share above which a run stops before writing (a fraction, 0-1).
DEFAULT_MAX_QUARANTINE_SHARE = 0.05
# Stripped before the extension when a station id is taken from a file name.
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".snappy", ".deflate")


class StationMappingError(ValueError, CurationError):
    """The stations given cannot be paired with the inputs (a usage error).

    A ValueError for command lines (argparse turns it into exit code 2) and a
    CurationError for `run_curation` callers; raised before any work.
    """


@dataclasses.dataclass(frozen=True)
class RawInput:
    """One raw-data path or glob and where its files' station comes from.

    Attributes:
      pattern: a CSV path or glob.
      station: the station id of this pattern's files (None: none given).
      paired: True if `station` was given for this pattern alone (one
        `--station` per `--raw-data`), False if it is the single default for
        every input; a file with its own station column conflicts with a
        paired station and ignores a default.
      from_filename: each file's station is its file name without the
        extension (`raw/KSEA.csv` -> `KSEA`); a station column conflicts.
    """

    pattern: str
    station: Optional[str] = None
    paired: bool = False
    from_filename: bool = False


def pair_stations(raw_data: Sequence[str], stations: Optional[Sequence[str]],
                  from_filename: bool = False) -> List[RawInput]:
    """Pairs each raw-data path/glob with its station, as the command lines give them.

    Pure (reads no file), so a runner can call it while checking its flags.

    Args:
      raw_data: the `--raw-data`/`--input` values, in order.
      stations: the `--station` values, in order (None or empty: none). One
        value is the default for every file without a station column (as
        before); as many values as `raw_data` pair up in order.
      from_filename: take each file's station from its file name instead.

    Returns:
      One RawInput per raw-data value, in order.

    Raises:
      StationMappingError: another number of stations than 0, 1 or
        len(raw_data) (the message names both counts), a blank station, or
        stations together with `from_filename`.
    """
    raw_data = [raw_data] if isinstance(raw_data, str) else list(raw_data)
    stations = [stations] if isinstance(stations, str) else list(stations or [])
    blank = [index + 1 for index, value in enumerate(stations) if not (value or "").strip()]
    if blank:
        raise StationMappingError(
            f"--station value {blank[0]} of {len(stations)} is blank; give a station id.")
    stations = [value.strip() for value in stations]
    if from_filename:
        if stations:
            raise StationMappingError(
                f"--station ({len(stations)} given) and --station-from-filename exclude each "
                "other: either name the stations or take them from the file names.")
        return [RawInput(pattern, from_filename=True) for pattern in raw_data]
    if not stations:
        return [RawInput(pattern) for pattern in raw_data]
    if len(stations) == 1:
        return [RawInput(pattern, stations[0]) for pattern in raw_data]
    if len(stations) != len(raw_data):
        raise StationMappingError(
            f"{len(stations)} --station values for {len(raw_data)} --raw-data values: give "
            "one station for all files, or one per --raw-data value, paired in order.")
    return [RawInput(pattern, station, paired=True) for pattern, station in zip(raw_data, stations)]


def share_flag(text: str) -> float:
    """argparse type of --max-quarantine-share: a number within [0, 1].

    Here rather than in job.py so that a runner checks its flags without
    importing pyspark.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: not a number") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text}: must be within [0, 1] (a share of rows)")
    return value


def station_from_filename(path: str) -> str:
    """`raw/KSEA.csv` -> `KSEA`; `raw/KSEA.csv.gz` -> `KSEA` (compression suffix first)."""
    name = os.path.basename(path)
    for suffix in _COMPRESSION_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return os.path.splitext(name)[0] or name


def as_raw_inputs(input_paths: Union[str, RawInput, Sequence[Union[str, RawInput]]],
                  station: Optional[str] = None) -> List[RawInput]:
    """RawInputs of `run_curation`'s `input_paths`; plain strings take `station` as default."""
    items = [input_paths] if isinstance(input_paths, (str, RawInput)) else list(input_paths)
    return [item if isinstance(item, RawInput) else RawInput(item, station) for item in items]


@dataclasses.dataclass(frozen=True)
class StationSource:
    """Where one file's station comes from: `station` (None: its own column) and how."""

    station: Optional[str]
    how: str  # "default", "paired", "filename" or "column"


def resolve_stations(raw_inputs: Sequence[RawInput]) -> Dict[str, StationSource]:
    """{absolute file path: StationSource before its header is read}, sorted by path.

    Raises:
      CurationError: a pattern matches no file, or a file is matched by two
        patterns that give it different stations.
    """
    if not raw_inputs:
        raise CurationError("No input path given.")
    sources: Dict[str, StationSource] = {}
    for item in raw_inputs:
        for path in resolve_inputs(item.pattern):
            if item.from_filename:
                source = StationSource(station_from_filename(path), "filename")
            elif item.station:
                source = StationSource(item.station, "paired" if item.paired else "default")
            else:
                source = StationSource(None, "column")
            previous = sources.get(path)
            if previous is not None and previous.station != source.station:
                raise CurationError(
                    f"Input file {path} is matched by more than one --raw-data value with "
                    f"different stations ({previous.station!r} and {source.station!r}).")
            sources[path] = source
    return dict(sorted(sources.items()))


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
        missing.append(f"{features.STATION_KEY} (absent, and no station was given: "
                       "--station / station=, or --station-from-filename)")
    if missing:
        raise CurationError(
            f"Input file {path} is missing required column(s): {', '.join(missing)}. "
            f"Required: {', '.join(REQUIRED_COLUMNS)} (optional: "
            f"{', '.join(OPTIONAL_COLUMNS)}); found: {', '.join(header)}."
        )


def read_headers(files: Union[List[str], Mapping[str, StationSource]],
                 station: Optional[str] = None) -> Dict[str, List[str]]:
    """{file: header} for files that all pass `read_header` and `check_columns`.

    Args:
      files: file paths (each taking `station` as default), or
        {file: StationSource} from `resolve_stations`.
      station: the default station of a plain list of files.

    Raises:
      CurationError: see `read_header` and `check_columns`; also a file with a
        station column that was given a station of its own (paired or from
        its file name): which one is meant is unclear, so nothing is guessed.
    """
    if not isinstance(files, Mapping):
        files = {path: StationSource(station, "default") for path in files}
    headers = {}
    for path, source in files.items():
        headers[path] = read_header(path)
        if features.STATION_KEY in headers[path] and source.how in ("paired", "filename"):
            given = ("--station-from-filename" if source.how == "filename"
                     else "its paired --station")
            raise CurationError(
                f"Input file {path} has a {features.STATION_KEY} column, but {given} also "
                f"names its station ({source.station!r}); drop the column or the station "
                "for this file (a single --station for all files is only a default for "
                "files without the column).")
        check_columns(path, headers[path], source.station)
    return headers


def file_stations(headers: Mapping[str, List[str]],
                  sources: Mapping[str, StationSource]) -> Dict[str, Optional[str]]:
    """{file: the station its rows get, or None when they carry a station column}."""
    return {path: None if features.STATION_KEY in header else sources[path].station
            for path, header in headers.items()}


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inputs_fingerprint(file_digests: Dict[str, str],
                       station: Union[None, str, Mapping[str, Optional[str]]]) -> str:
    """sha256 identifying what a run curates: file contents in order, and the stations.

    Paths are left out so that moving unchanged data does not re-curate it;
    the stations are in because they change the curated rows.

    Args:
      file_digests: {file: sha256}.
      station: one default station for all files (or None), or {file: the
        station its rows get, None for a file with a station column}; a
        mapping that gives every file the same station fingerprints like that
        single station, so spans written before per-file stations existed are
        still recognised.
    """
    if isinstance(station, Mapping):
        distinct = set(station.values())
        if len(distinct) <= 1:
            station = next(iter(distinct), None)
    identity = {"contents": [file_digests[path] for path in sorted(file_digests)]}
    if isinstance(station, Mapping):
        identity["stations"] = [station[path] for path in sorted(file_digests)]
    else:
        identity["station"] = station
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def add_station_flags(parser, inputs_flag: str) -> None:
    """Adds --station, --station-from-filename and --max-quarantine-share.

    One definition for every command line that curates (the job's own CLI,
    local_runner.py); `inputs_flag` is that CLI's raw-data flag, named in the
    help. `pair_stations(raw, flags.station, flags.station_from_filename)`
    then pairs them.
    """
    parser.add_argument("--station", action="append", default=None,
                        help="station id for CSVs without a station column: once for all "
                             f"{inputs_flag} values, or once per {inputs_flag}, paired in order")
    parser.add_argument("--station-from-filename", action="store_true",
                        help="each file's station is its file name without the extension "
                             "(raw/KSEA.csv -> KSEA); excludes --station; files must not have "
                             "a station column")
    parser.add_argument("--max-quarantine-share", type=share_flag,
                        default=DEFAULT_MAX_QUARANTINE_SHARE,
                        help="stop (nothing written) when more than this share of the rows "
                             "(0-1) is quarantined (default %(default)s; 1 = no ceiling)")
