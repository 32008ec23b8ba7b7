"""Span directories: numbering, lookup by input fingerprint, atomic publishing.

A span appears by renaming a fully written staging directory to
`span-<N>`. Rename is atomic on a local filesystem and on HDFS; object
stores (GCS, S3) copy instead, so there a reader could see a partial span.
"""
import contextlib
import json
import os
import shutil
import uuid
from typing import Iterator, List, Optional

from components.spark_curation.contract import CurationError

CURATED_DIR = "curated"
QUARANTINE_DIR = "quarantine"
SPAN_PREFIX = "span-"
SPAN_DIR_PATTERN = SPAN_PREFIX + "{SPAN}"
MANIFEST_FILE = "_manifest.json"
# A leading dot keeps staging directories out of any `span-*` glob and out of
# Spark/Hadoop listings, which skip hidden names.
STAGING_PREFIX = ".tmp-"


def curated_span_pattern() -> str:
    """ExampleGen split pattern relative to `<output_dir>/curated`."""
    return SPAN_DIR_PATTERN + "/*.parquet"


def span_dir(output_dir: str, span: int, kind: str = CURATED_DIR) -> str:
    """`<output_dir>/<kind>/span-<span>`."""
    return os.path.join(output_dir, kind, SPAN_DIR_PATTERN.format(SPAN=span))


def existing_spans(output_dir: str, kind: str = CURATED_DIR) -> List[int]:
    """Sorted span numbers of the `span-<N>` directories under `<output_dir>/<kind>`."""
    root = os.path.join(output_dir, kind)
    if not os.path.isdir(root):
        return []
    spans = []
    for name in os.listdir(root):
        number = name[len(SPAN_PREFIX):]
        # Only canonical names: "span-07" would not match SPAN_DIR_PATTERN.format(7).
        if (name.startswith(SPAN_PREFIX) and number.isdigit() and str(int(number)) == number
                and os.path.isdir(os.path.join(root, name))):
            spans.append(int(number))
    return sorted(spans)


def latest_span(output_dir: str) -> Optional[int]:
    """The largest curated span number, or None when there is none."""
    spans = existing_spans(output_dir)
    return spans[-1] if spans else None


def read_manifest(output_dir: str, span: int) -> Optional[dict]:
    """The manifest of a curated span, or None if it has none."""
    path = os.path.join(span_dir(output_dir, span), MANIFEST_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def find_span_for_inputs(output_dir: str, fingerprint: str) -> Optional[int]:
    """The curated span whose manifest records this input fingerprint, if any."""
    for span in existing_spans(output_dir):
        manifest = read_manifest(output_dir, span)
        if manifest and manifest.get("input_fingerprint") == fingerprint:
            return span
    return None


def check_span_free(output_dir: str, span: int) -> None:
    """Raises CurationError if span `span` exists as curated or quarantine output."""
    if span < 1:
        raise CurationError(f"Span must be a positive integer, got {span}.")
    for kind in (CURATED_DIR, QUARANTINE_DIR):
        path = span_dir(output_dir, span, kind)
        if os.path.exists(path):
            hint = "" if kind == CURATED_DIR else (
                " (a quarantine without its curated span is left over from an "
                "interrupted run; remove it to reuse the number)")
            raise CurationError(
                f"span {span} already exists in {path}; refusing to overwrite{hint}.")


@contextlib.contextmanager
def staging_dir(root: str) -> Iterator[str]:
    """A fresh, not yet existing path inside `root`, removed on exit if still there."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    try:
        yield path
    finally:
        if os.path.exists(path):
            shutil.rmtree(path)


def publish(staging: str, target: str) -> None:
    """Renames a completely written `staging` dir to `target`, never replacing one."""
    if os.path.exists(target):
        raise CurationError(
            f"span directory {target} already exists; refusing to overwrite.")
    os.rename(staging, target)
