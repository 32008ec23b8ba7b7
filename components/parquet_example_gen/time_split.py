"""The time split: per station, earlier dates train, later dates evaluate.

TFX's hash split (`SplitConfig.hash_buckets` + `partition_feature_name`)
puts each date in a split by a hash, so neighbouring days, whose weather is
strongly correlated, sit in train and in eval at once: the evaluation then
measures partly how well the model remembers the day before. The time split
keeps the output config's split names and ratio (2:1 train:eval) but gives
each station's earliest dates to the first split and its latest to the last:

  1. a pre-pass (`plan_time_split`) reads only the station and date columns
     of the input files with pyarrow and finds, per station, its distinct
     dates; the first `n - n_eval` of a station's n sorted dates go to
     `train`, the last n_eval = max(1, floor(n * eval_share)) to `eval`, so
     the cutoff is the first eval date;
  2. each row then goes to split `number of cutoffs <= its date`, i.e.
     `train` when `date < cutoff[station]` (`TimeSplits`, used by both write
     paths, so the direct path and the Beam path split identically).

A station with fewer than MIN_DATES distinct dates cannot be split by time:
all its rows go to the first split (train) and the record says so.

With more than two output splits the same holds with one cutoff per later
split (each later split gets at least one date of every splittable station).
"""
import dataclasses
import datetime
import json
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.parquet_example_gen import conversion, direct
from models import features

TIME, HASH = "time", "hash"
SPLIT_METHODS = (TIME, HASH)
# The column the time split groups by; the date is the output config's
# partition_feature_name.
GROUP_FEATURE = features.STATION_KEY
# A station needs this many distinct dates to be split by time (two to
# train on, one to evaluate); with fewer, all its rows train.
MIN_DATES = 3
# Next to the Split-* directories of a time-split Examples artifact.
RECORD_FILE = "time_split.json"
_EPOCH = datetime.date(1970, 1, 1)


def iso(day: int) -> str:
    """Days since the Unix epoch -> 'YYYY-MM-DD'."""
    return (_EPOCH + datetime.timedelta(days=int(day))).isoformat()


# --- reading the two columns ---------------------------------------------------

def _decoded(array: pa.Array) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def group_values(array: pa.Array, column: str) -> pa.Array:
    """The station column as strings (the keys of the cutoffs); nulls are an error."""
    array = _decoded(array)
    if array.null_count:
        raise ValueError(
            f"Column '{column}' is null in {array.null_count} of {len(array)} rows; the time "
            f"split needs every row's {column} (or use the hash split, --split hash).")
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
            or pa.types.is_integer(array.type)):
        raise ValueError(f"Column '{column}' has Arrow type {array.type}; the time split groups "
                         "by a string or integer column.")
    return array.cast(pa.string())


def day_numbers(array: pa.Array, column: str) -> np.ndarray:
    """A date column as int64 days since the Unix epoch.

    Accepts date32 / date64 and ISO 'YYYY-MM-DD' strings; a null, an
    unparsable string or any other type is a ValueError naming the column.
    """
    array = _decoded(array)
    if array.null_count:
        raise ValueError(
            f"Column '{column}' is null in {array.null_count} of {len(array)} rows; the time "
            "split needs every row's date.")
    if pa.types.is_date64(array.type):
        array = array.cast(pa.date32())
    if pa.types.is_date32(array.type):
        return array.cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        parsed = pc.strptime(array, format="%Y-%m-%d", unit="s", error_is_null=True)
        if parsed.null_count:
            bad = array.filter(parsed.is_null())[0].as_py()
            raise ValueError(f"Column '{column}' holds {bad!r}, not a YYYY-MM-DD date; the "
                             "time split orders rows by this date.")
        return parsed.cast(pa.int64()).to_numpy(zero_copy_only=False) // 86_400
    raise ValueError(f"Column '{column}' has Arrow type {array.type}; the time split needs a "
                     "date (date32, date64 or YYYY-MM-DD strings).")


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    index = batch.schema.get_field_index(name)
    if index < 0:
        raise ValueError(f"The time split needs column '{name}', which the input does not "
                         f"have; columns: {batch.schema.names}.")
    return batch.column(index)


# --- routing rows ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TimeSplits:
    """Output splits by date per station, the cutoffs from `plan_time_split`.

    A row of station s and date d goes to split i = the number of cutoffs[s]
    that are <= d (an empty tuple: every row of s to split 0).

    Attributes:
      names: output split names, earliest first.
      date_feature: the column holding each row's date.
      group_feature: the column holding each row's station.
      cutoffs: station -> first day (days since epoch) of each later split.
    """

    names: Tuple[str, ...]
    date_feature: str
    group_feature: str
    cutoffs: Mapping[str, Tuple[int, ...]]

    def examples_and_indices(self, batch: pa.RecordBatch) -> Tuple[pa.LargeBinaryArray, np.ndarray]:
        """The batch's serialized examples and each one's split index."""
        stations = group_values(_column(batch, self.group_feature), self.group_feature)
        days = day_numbers(_column(batch, self.date_feature), self.date_feature)
        encoded = stations.dictionary_encode()
        later = len(self.names) - 1
        bounds = np.full((len(encoded.dictionary), later), np.iinfo(np.int64).max, np.int64)
        for row, station in enumerate(encoded.dictionary.to_pylist()):
            if station not in self.cutoffs:
                raise ValueError(
                    f"{self.group_feature} '{station}' was not in the input when the time "
                    "split's cutoffs were computed (did the input change during the run?).")
            station_cutoffs = self.cutoffs[station]
            bounds[row, :len(station_cutoffs)] = station_cutoffs
        per_row = bounds[encoded.indices.to_numpy(zero_copy_only=False)]
        indices = (days[:, None] >= per_row).sum(axis=1)
        return conversion.record_batch_to_example_array(batch), indices

    def __call__(self, batch: pa.RecordBatch):
        return direct.split_blocks(self.names, *self.examples_and_indices(batch))


# --- the pre-pass ------------------------------------------------------------------

def _distinct_station_days(files: Sequence[str], group_feature: str, date_feature: str) -> pa.Table:
    """(station, day, rows) for every distinct station and day in the files."""
    parts = []
    for path in files:
        parquet_file = direct._open_parquet(path)  # pylint: disable=protected-access
        names = parquet_file.schema_arrow.names
        missing = [name for name in (group_feature, date_feature) if name not in names]
        if missing:
            raise direct.ParquetInputError(
                f"Parquet file '{path}' has no column {', '.join(repr(m) for m in missing)}, "
                f"which the time split needs (per {group_feature}, by {date_feature}); columns: "
                f"{names}. Use the hash split (--split hash) for data without them.")
        try:
            for batch in parquet_file.iter_batches(batch_size=conversion.BATCH_ROWS,
                                                   columns=[group_feature, date_feature]):
                if not batch.num_rows:
                    continue
                table = pa.table({
                    "station": group_values(batch.column(0), group_feature),
                    "day": pa.array(day_numbers(batch.column(1), date_feature), pa.int64()),
                })
                parts.append(table.group_by(["station", "day"]).aggregate([("day", "count")]))
        except ValueError as error:
            raise direct.ParquetInputError(f"Parquet file '{path}': {error}") from error
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...
            raise direct.ParquetInputError(
                f"Cannot read Parquet file '{path}' (corrupt or truncated?): "
                f"{type(error).__name__}: {error}") from error
    if not parts:
        return pa.table({"station": pa.array([], pa.string()), "day": pa.array([], pa.int64()),
                         "rows": pa.array([], pa.int64())})
    merged = pa.concat_tables(parts).group_by(["station", "day"]).aggregate([("day_count", "sum")])
    return pa.table({"station": merged.column("station"), "day": merged.column("day"),
                     "rows": merged.column("day_count_sum")})


def split_starts(dates: int, weights: Sequence[int]) -> Optional[List[int]]:
    """Index (into a station's sorted dates) where each later split starts.

    None when the station has too few dates to split (fewer than MIN_DATES or
    than there are splits). Split k >= 1 gets the last max(splits - k,
    floor(dates * share of splits k..)) dates, so with 2:1 the eval split
    is max(1, floor(dates / 3)) dates.
    """
    count = len(weights)
    if dates < max(MIN_DATES, count):
        return None
    total = sum(weights)
    starts = []
    for k in range(1, count):
        tail = sum(weights[k:])
        starts.append(dates - max(count - k, math.floor(dates * tail / total)))
    return starts


def plan_time_split(files: Sequence[str], names: Sequence[str], weights: Sequence[int],
                    date_feature: str, group_feature: str = GROUP_FEATURE
                    ) -> Tuple[TimeSplits, dict]:
    """Reads the station and date columns of `files`; returns the router and its record.

    Args:
      files: the Parquet files of the one input split.
      names: output split names, earliest dates first (train, eval).
      weights: the splits' shares (the output config's hash_buckets).
      date_feature: the date column (the output config's partition feature).
      group_feature: the station column.

    Returns:
      (TimeSplits, record): the record (JSON-friendly) has per station its
      distinct dates and rows per split, its last date of each split but the
      last, and the first date of each later split.

    Raises:
      ParquetInputError: a file is unreadable, lacks either column, or has a
        null station or date or a date that is not one (the message names it).
    """
    if len(names) < 2:
        raise ValueError(f"The time split needs at least two output splits; got {list(names)}.")
    if len(weights) != len(names) or any(w <= 0 for w in weights):
        raise ValueError(f"Split shares {list(weights)} for splits {list(names)}: one positive "
                         "share (hash_buckets) per split.")
    distinct = _distinct_station_days(files, group_feature, date_feature)
    cutoffs: Dict[str, Tuple[int, ...]] = {}
    stations = {}
    station_of = np.asarray(distinct.column("station").to_pylist(), dtype=str)
    day_of = np.asarray(distinct.column("day").to_pylist(), dtype=np.int64)
    rows_of = np.asarray(distinct.column("rows").to_pylist(), dtype=np.int64)
    order = np.lexsort((day_of, station_of))
    station_of, day_of, rows_of = station_of[order], day_of[order], rows_of[order]
    boundaries = np.flatnonzero(np.r_[True, station_of[1:] != station_of[:-1]]) if len(order) else []
    ends = list(boundaries[1:]) + [len(order)]
    for begin, end in zip(boundaries, ends):
        station = str(station_of[begin])
        days, rows = day_of[begin:end], rows_of[begin:end]
        starts = split_starts(len(days), weights)
        entry = {"dates": int(len(days)), "rows": int(rows.sum()),
                 "first_date": iso(days[0]), "last_date": iso(days[-1])}
        if starts is None:
            cutoffs[station] = ()
            entry.update(split=False, dates_per_split=[int(len(days))] + [0] * (len(names) - 1),
                         rows_per_split=[int(rows.sum())] + [0] * (len(names) - 1),
                         note=f"fewer than {max(MIN_DATES, len(names))} distinct dates: "
                              f"all rows in {names[0]}")
        else:
            edges = [0] + starts + [len(days)]
            cutoffs[station] = tuple(int(days[s]) for s in starts)
            entry.update(
                split=True,
                dates_per_split=[int(edges[i + 1] - edges[i]) for i in range(len(names))],
                rows_per_split=[int(rows[edges[i]:edges[i + 1]].sum()) for i in range(len(names))],
                last_date_of=[iso(days[s - 1]) for s in starts],
                cutoffs=[iso(days[s]) for s in starts])
        stations[station] = entry
    record = {
        "method": TIME,
        "splits": list(names),
        "shares": [int(w) for w in weights],
        "group_feature": group_feature,
        "date_feature": date_feature,
        "min_dates": MIN_DATES,
        "rule": f"per {group_feature}: its earliest dates to {names[0]}, its latest to "
                f"{names[-1]}; a row goes to the split whose date range holds its "
                f"{date_feature} (train: {date_feature} < cutoff)",
        "stations": stations,
    }
    return TimeSplits(tuple(names), date_feature, group_feature, cutoffs), record


# --- what the run summary prints ---------------------------------------------------

def _station_text(name: str, entry: dict, names: Sequence[str]) -> str:
    parts = [f"{split} <= {last}" for split, last in zip(names, entry["last_date_of"])]
    return f"{name} {', '.join(parts)}, {names[-1]} after"


def describe(record: dict, most_stations: int = 3) -> str:
    """One line: 'by time per station: seattle train <= 2014-08-31, eval after'."""
    names = record["splits"]
    stations = record["stations"]
    split = {name: entry for name, entry in stations.items() if entry["split"]}
    unsplit = sorted(name for name, entry in stations.items() if not entry["split"])
    shares = ":".join(str(s) for s in record["shares"])
    head = f"by time per {record['group_feature']} ({'/'.join(names)} = {shares} of each one's dates)"
    if not split:
        text = f"{head}: no {record['group_feature']} has {record['min_dates']} dates"
    elif len(split) > 1 and len({tuple(e["last_date_of"]) for e in split.values()}) == 1:
        entry = next(iter(split.values()))
        text = f"{head}: " + _station_text(f"all {len(split)} stations:", entry, names)
    elif len(split) <= most_stations:
        text = f"{head}: " + "; ".join(_station_text(n, split[n], names) for n in sorted(split))
    else:
        last = sorted(entry["last_date_of"][0] for entry in split.values())
        text = (f"{head}: {len(split)} stations, {names[0]} ends between {last[0]} and "
                f"{last[-1]}, {names[-1]} after")
    if unsplit:
        shown = ", ".join(unsplit[:most_stations]) + (", ..." if len(unsplit) > most_stations else "")
        text += (f"; {len(unsplit)} {record['group_feature']}(s) with fewer than "
                 f"{record['min_dates']} dates, all in {names[0]}: {shown}")
    return text


def describe_hash(names: Sequence[str], buckets: Sequence[int], partition_feature: str) -> str:
    shares = ":".join(str(b) for b in buckets)
    key = f"the {partition_feature}" if partition_feature else "the whole example"
    return (f"by hash of {key} ({'/'.join(names)} = {shares}; neighbouring days can fall "
            "in both)")


def dumps(record: dict) -> str:
    return json.dumps(record, indent=1, sort_keys=True)
