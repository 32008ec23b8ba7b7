"""ExampleGen output without Beam: Parquet record batches -> split TFRecord shards.

What TFX's Beam path does per element (`beam.Partition`, then `WriteSplit`:
a serialize step, a Reshuffle and `WriteToTFRecord`) this module does per
record batch, in one process:

  reader (this thread)   ParquetFile.iter_batches, BATCH_ROWS rows at a time,
                         one file after the other (never a whole file)
  converters (threads)   batch -> serialized examples (conversion/wire) ->
                         split of each row (TFX's hash, per distinct key, or
                         the time split's per-station cutoffs) ->
                         TFRecord framing (length, masked CRC32C, data, CRC)
                         -> one contiguous byte block per output split
  shard writers          one thread per output shard: gzip (zlib releases
  (threads)              the GIL) and write; fed through bounded queues

Results are taken from the converters in batch order and batch k of a split
goes to shard k mod (shards of the split), so the same input always gives the
same files. At most `workers + 1` batches are being converted and each writer
queue holds at most QUEUE_BLOCKS blocks, which bounds memory whatever the
input size.

The output is what TFX's ExampleGen writes: `<artifact>/Split-<name>/
data_tfrecord-SSSSS-of-NNNNN.gz`, GZIP-compressed TFRecord files of
serialized tf.Examples, each example in exactly the split TFX's
`_PartitionFn` would put it in. Shards are written into a hidden staging
directory under the artifact and moved into the split directories only when
every shard is complete; on any error the staging directory is removed and
no split directory is created.
"""
import bisect
import collections
import concurrent.futures
import dataclasses
import hashlib
import os
import queue
import struct
import threading
import uuid
import zlib
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import google_crc32c
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from absl import logging
from apache_beam.io.filesystems import FileSystems
from tfx.dsl.io import fileio

from components.parquet_example_gen import conversion, wire

# TFX's write_split: DEFAULT_TF_RECORD_FILE_NAME, `file_name_suffix='.gz'`
# (GZIP), Beam's default shard name template '-SSSSS-of-NNNNN'.
FILE_PREFIX = "data_tfrecord"
FILE_SUFFIX = ".gz"
# zlib level 1: ~3x less CPU than level 6 (zlib's default, what Beam's GZIP writer
# uses), files ~40% larger; every gzip reader reads either. Gzip is most of
# the direct path's CPU time.
GZIP_LEVEL = 1
# Blocks (one batch's records of one split) queued per shard writer.
QUEUE_BLOCKS = 2
# At most this many converter threads and shards per split.
MAX_WORKERS = 4
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_CRC_MASK_DELTA = np.uint32(0xA282EAD8)


class ParquetInputError(ValueError):
    """A Parquet input file cannot be read or converted; the message names it."""


def default_workers() -> int:
    """Converter threads and shards per split: the CPUs this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


# --- split assignment: TFX's _PartitionFn, once per distinct key -------------

def split_boundaries(hash_buckets: Sequence[int]) -> List[int]:
    """Cumulative bucket counts, as TFX's base executor builds them."""
    boundaries, total = [], 0
    for buckets in hash_buckets:
        total += buckets
        boundaries.append(total)
    return boundaries


def split_indices(keys: pa.Array, boundaries: Sequence[int]) -> np.ndarray:
    """Each key's split index, exactly as TFX's `_PartitionFn` computes it.

    TFX: `bisect(boundaries, int(sha256(key).hexdigest(), 16) % boundaries[-1])`.
    Keys repeat (a date is shared by every station), so each distinct key is
    hashed once.
    """
    encoded = keys.dictionary_encode()
    total = boundaries[-1]
    per_key = np.array(
        [bisect.bisect(boundaries, int(hashlib.sha256(key).hexdigest(), 16) % total)
         for key in encoded.dictionary.to_pylist()], np.int64)
    return per_key[encoded.indices.to_numpy(zero_copy_only=False)]


# --- TFRecord framing ----------------------------------------------------------

def _masked_crc(crc: np.ndarray) -> np.ndarray:
    """TFRecord's masked CRC32C: rotate right by 15 bits, add a constant (mod 2^32)."""
    crc = crc.astype(np.uint32)
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + _CRC_MASK_DELTA


def _rows(matrix: np.ndarray) -> pa.LargeBinaryArray:
    """Each row of a uint8 matrix as one binary value."""
    rows, width = matrix.shape
    return wire._Ragged(np.arange(rows + 1, dtype=np.int64) * width,  # pylint: disable=protected-access
                        matrix.reshape(-1)).to_arrow()


def tfrecord_frames(records: pa.LargeBinaryArray) -> pa.LargeBinaryArray:
    """Each record as TFRecord writes it.

    uint64 length, masked CRC32C of those 8 bytes, the data, masked CRC32C of
    the data; integers little-endian.
    """
    count = len(records)
    lengths = pc.binary_length(records).to_numpy(zero_copy_only=False).astype("<u8")
    crc = google_crc32c.value
    data_crcs = np.fromiter((crc(record) for record in records.to_pylist()), np.uint32, count)
    distinct, inverse = np.unique(lengths, return_inverse=True)
    length_crcs = np.array([crc(struct.pack("<Q", int(length))) for length in distinct],
                           np.uint32)[inverse]
    header = np.empty((count, 12), np.uint8)
    header[:, :8] = lengths.view(np.uint8).reshape(count, 8)
    header[:, 8:] = _masked_crc(length_crcs).astype("<u4").view(np.uint8).reshape(count, 4)
    footer = _masked_crc(data_crcs).astype("<u4").view(np.uint8).reshape(count, 1 * 4)
    return wire._join(_rows(header), records, _rows(footer))  # pylint: disable=protected-access


def _block(framed: pa.LargeBinaryArray) -> pa.Buffer:
    """The framed records back to back: a piece of a TFRecord file."""
    if not len(framed):
        return pa.py_buffer(b"")
    _, offsets, data = framed.buffers()
    offsets = np.frombuffer(offsets, np.int64, len(framed) + 1, framed.offset * 8)
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


# --- routing a batch to its splits ----------------------------------------------

@dataclasses.dataclass(frozen=True)
class HashSplits:
    """Output splits chosen by hash, as TFX's `SplitConfig`.

    Attributes:
      names: output split names, in the split config's order.
      boundaries: `split_boundaries` of the splits' hash buckets.
      partition_feature: hash this feature (serialized as TFX does); None
        hashes the whole serialized example.
    """

    names: Tuple[str, ...]
    boundaries: Tuple[int, ...]
    partition_feature: Optional[str] = None

    def examples_and_indices(self, batch: pa.RecordBatch) -> Tuple[pa.LargeBinaryArray, np.ndarray]:
        """The batch's serialized examples and each one's split index."""
        if self.partition_feature:
            examples, keys = conversion.record_batch_to_keyed_example_arrays(
                batch, self.partition_feature)
        else:
            examples = conversion.record_batch_to_example_array(batch)
            keys = examples
        return examples, split_indices(keys, self.boundaries)

    def __call__(self, batch: pa.RecordBatch) -> Dict[str, Tuple[int, pa.Buffer]]:
        return split_blocks(self.names, *self.examples_and_indices(batch))


def split_blocks(names: Sequence[str], examples: pa.LargeBinaryArray,
                 indices: np.ndarray) -> Dict[str, Tuple[int, pa.Buffer]]:
    """Per split name, (records, their TFRecord frames back to back)."""
    framed = tfrecord_frames(examples)
    blocks = {}
    for index, name in enumerate(names):
        mask = indices == index
        selected = framed.filter(pa.array(mask)) if not mask.all() else framed
        blocks[name] = (len(selected), _block(selected))
    return blocks


@dataclasses.dataclass(frozen=True)
class WholeSplit:
    """Every row into one output split (input splits kept as they are)."""

    name: str

    def __call__(self, batch: pa.RecordBatch) -> Dict[str, Tuple[int, pa.Buffer]]:
        framed = tfrecord_frames(conversion.record_batch_to_example_array(batch))
        return {self.name: (len(framed), _block(framed))}


Router = Callable[[pa.RecordBatch], Dict[str, Tuple[int, pa.Buffer]]]


@dataclasses.dataclass(frozen=True)
class Source:
    """Parquet files whose rows `route` sends to output splits."""

    files: Tuple[str, ...]
    route: Router
    rows: int  # from the footers


# --- reading ---------------------------------------------------------------------

def _is_local(path: str) -> bool:
    return "://" not in path


def _open_parquet(path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path if _is_local(path) else FileSystems.open(path))
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...
        raise ParquetInputError(
            f"Cannot read Parquet file '{path}' (truncated or not Parquet?): "
            f"{type(error).__name__}: {error}") from error


def parquet_rows(files: Sequence[str]) -> int:
    """Total rows from the files' footers; each file must have a readable footer.

    Raises:
      ParquetInputError: a file is not readable Parquet (the message names
        it), or the files hold no rows at all (an empty span).
    """
    total = 0
    for path in files:
        total += _open_parquet(path).metadata.num_rows
    if not total:
        listed = ", ".join(f"'{path}'" for path in files)
        raise ParquetInputError(
            f"The ExampleGen input has no rows: {len(files)} Parquet file(s), all empty: "
            f"{listed}. An empty span would give empty splits; curate the span again.")
    return total


def _batches(path: str) -> Iterator[pa.RecordBatch]:
    """The file's rows, BATCH_ROWS at a time; read errors name the file."""
    parquet_file = _open_parquet(path)
    batches = parquet_file.iter_batches(batch_size=conversion.BATCH_ROWS)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as error:
            raise ParquetInputError(
                f"Cannot read Parquet file '{path}' (corrupt or truncated?): "
                f"{type(error).__name__}: {error}") from error
        if batch.num_rows:
            yield batch


def _convert(route: Router, path: str, batch: pa.RecordBatch):
    try:
        return route(batch)
    except ValueError as error:
        raise ParquetInputError(f"Parquet file '{path}': {error}") from error


# --- writing ---------------------------------------------------------------------

def _open_for_writing(path: str):
    if _is_local(path):
        return open(path, "wb")  # pylint: disable=consider-using-with
    return fileio.open(path, "wb")


class _ShardWriter:
    """A thread that gzips the blocks it is given into one TFRecord file.

    After a failure it keeps taking blocks (and drops them) until told to
    stop, so the feeding thread never blocks on a full queue.
    """

    def __init__(self, path: str, level: int):
        self.path = path
        self.records = 0
        self.error: Optional[BaseException] = None
        self._level = level
        self._queue: "queue.Queue[Optional[pa.Buffer]]" = queue.Queue(QUEUE_BLOCKS)
        self._thread = threading.Thread(target=self._run, name=f"shard-writer {path}",
                                        daemon=True)
        self._thread.start()

    def put(self, records: int, block: pa.Buffer) -> None:
        if self.error is not None:
            raise self.error
        self.records += records
        self._queue.put(block)

    def close(self) -> None:
        """Flushes the file; raises what went wrong in the thread."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        compressor = zlib.compressobj(self._level, zlib.DEFLATED, _GZIP_WBITS)
        output = None
        try:
            output = _open_for_writing(self.path)
        except BaseException as error:  # pylint: disable=broad-except
            self.error = error
        while True:
            block = self._queue.get()
            if block is None:
                break
            if self.error is not None:
                continue
            try:
                output.write(compressor.compress(block))
            except BaseException as error:  # pylint: disable=broad-except
                self.error = error
        if output is not None:
            try:
                if self.error is None:
                    output.write(compressor.flush())
                output.close()
            except BaseException as error:  # pylint: disable=broad-except
                self.error = self.error or error


def shard_name(index: int, count: int) -> str:
    """`data_tfrecord-00000-of-00002.gz`, as Beam names TFX's output shards."""
    return f"{FILE_PREFIX}-{index:05d}-of-{count:05d}{FILE_SUFFIX}"


def write_splits(sources: Sequence[Source], split_dirs: Dict[str, str], staging_dir: str,
                 workers: Optional[int] = None, gzip_level: int = GZIP_LEVEL) -> Dict[str, int]:
    """Converts `sources` and writes every output split's shards.

    Args:
      sources: the inputs, read in order.
      split_dirs: output split name -> its directory (`<artifact>/Split-<name>`).
      staging_dir: a directory that does not exist yet, on the same file
        system, for the shards until all are complete; removed afterwards.
      workers: converter threads and most shards per split (default: the
        CPUs available, at most MAX_WORKERS).
      gzip_level: zlib compression level.

    Returns:
      Examples written per split.

    Raises:
      ParquetInputError: an input file is unreadable or has a value the
        conversion rules reject (the message names the file). Nothing is
        left in `split_dirs` then.
    """
    workers = workers or default_workers()
    # Every batch normally has rows of every split: a split has as many
    # shards as there are batches, up to `workers`.
    batches = sum(-(-source.rows // conversion.BATCH_ROWS) for source in sources)
    shards = max(1, min(workers, batches))
    writers: Dict[str, List[_ShardWriter]] = {}
    fileio.makedirs(staging_dir)
    try:
        for name in split_dirs:
            fileio.makedirs(os.path.join(staging_dir, f"Split-{name}"))
            writers[name] = [
                _ShardWriter(os.path.join(staging_dir, f"Split-{name}", shard_name(i, shards)),
                             gzip_level)
                for i in range(shards)]
        try:
            _convert_and_feed(sources, writers, workers)
        finally:
            errors = []
            for split_writers in writers.values():
                for writer in split_writers:
                    try:
                        writer.close()
                    except BaseException as error:  # pylint: disable=broad-except
                        errors.append(error)
        if errors:
            raise errors[0]
        _publish(writers, split_dirs)
    finally:
        if fileio.exists(staging_dir):
            fileio.rmtree(staging_dir)
    return {name: sum(w.records for w in split_writers) for name, split_writers in writers.items()}


def _convert_and_feed(sources: Sequence[Source], writers: Dict[str, List[_ShardWriter]],
                      workers: int) -> None:
    """Reads, converts in `workers` threads, hands blocks to writers in batch order."""
    blocks_given = collections.Counter()

    def feed(future: "concurrent.futures.Future") -> None:
        for name, (records, block) in future.result().items():
            split_writers = writers[name]
            split_writers[blocks_given[name] % len(split_writers)].put(records, block)
            blocks_given[name] += 1

    pending: "collections.deque[concurrent.futures.Future]" = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="example-gen") as pool:
        try:
            for source in sources:
                for path in source.files:
                    for batch in _batches(path):
                        pending.append(pool.submit(_convert, source.route, path, batch))
                        while len(pending) > workers:
                            feed(pending.popleft())
            while pending:
                feed(pending.popleft())
        finally:
            for future in pending:
                future.cancel()


def _publish(writers: Dict[str, List[_ShardWriter]], split_dirs: Dict[str, str]) -> None:
    """Moves complete shards into the split directories (replacing stale shards)."""
    for name, split_dir in split_dirs.items():
        if fileio.exists(split_dir):
            for stale in fileio.glob(os.path.join(split_dir, f"{FILE_PREFIX}-*")):
                fileio.remove(stale)
        else:
            fileio.makedirs(split_dir)
        for writer in writers[name]:
            fileio.rename(writer.path, os.path.join(split_dir, os.path.basename(writer.path)))


def new_staging_dir(artifact_uri: str) -> str:
    """A hidden, unique directory under the artifact for shards being written."""
    return os.path.join(artifact_uri, f".staging-{uuid.uuid4().hex}")
