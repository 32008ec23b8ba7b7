"""Start-up of the driver JVM the curation job launches itself (issue #11).

A curation of the bundled 48 kB file spent ~15-30 s in Spark, almost all of
it JVM start-up and the first jobs: ~35 s of CPU for 1,461 rows, mostly JIT
compiling and loading Spark's ~15,000 classes. Two JVM options cut that:

- `-XX:TieredStopAtLevel=1` (the quick C1 compiler only) for small inputs
  (at most `C1_ONLY_MAX_BYTES` of raw CSV). Measured on the bundled data:
  CPU 31-37 s -> 19-23 s. Above ~1 MB the optimising compiler pays for itself
  (100k rows: 28 -> 31 s with C1 only; 1M rows: 75 -> 126 s), so larger
  inputs keep the default.
- A class-data-sharing archive of Spark's classes (JDK 13+ dynamic AppCDS,
  `-XX:SharedArchiveFile`): a memory-mapped snapshot of the parsed classes,
  built once per machine, Java and pyspark installation by
  `python -m components.spark_curation.jvm_startup` (the set-up scripts run
  it; ~40 s of CPU, ~135 MB under the cache directory). Measured: bundled
  curation 14.9 -> 9.0 s wall (C1 only in both); 1M rows 75 -> 70 s.

Without an archive (not built yet, an older Java, an unwritable cache
directory) the JVM simply starts without one. A stale or foreign archive is
never used: its name carries a digest of the Java installation and of
pyspark's jars, and the JVM itself refuses an archive whose class path does
not match (`-Xshare:auto`, the default, then starts without sharing).

Environment:
  SPARK_CURATION_CLASS_ARCHIVE=off  never use or build an archive.
  RAIN_TOMORROW_CACHE_DIR           where archives live (default
                                    $XDG_CACHE_HOME/rain-tomorrow or
                                    ~/.cache/rain-tomorrow).
"""
import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from typing import List, Optional

ARCHIVE_ENV = "SPARK_CURATION_CLASS_ARCHIVE"
CACHE_ENV = "RAIN_TOMORROW_CACHE_DIR"
C1_ONLY_MAX_BYTES = 1 << 20
# First bytes of a JDK dynamic CDS archive: CDS_DYNAMIC_ARCHIVE_MAGIC 0xf00baba8,
# little-endian (the byte order of the platforms the JDK builds archives on here).
_DYNAMIC_MAGIC = bytes.fromhex("a8ab0bf0")
_MIN_JAVA_FOR_DYNAMIC_ARCHIVE = 13
# Seconds to wait for the JVM to write the archive and exit.
_DUMP_TIMEOUT_S = 300


def c1_only(input_bytes: int) -> bool:
    """True for inputs small enough that the C1-only JIT is faster overall."""
    return input_bytes <= C1_ONLY_MAX_BYTES


def _disabled() -> bool:
    return os.environ.get(ARCHIVE_ENV, "").strip().lower() in ("0", "off", "false", "no")


def cache_dir() -> str:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rain-tomorrow")


def java_home() -> Optional[str]:
    """The Java installation spark-submit will run ($JAVA_HOME, else `java` on PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.isfile(os.path.join(home, "bin", "java")):
        return os.path.realpath(home)
    java = shutil.which("java")
    if not java:
        return None
    return os.path.dirname(os.path.dirname(os.path.realpath(java)))


def java_major(home: str) -> Optional[int]:
    """The major version from `<home>/release` (JAVA_VERSION="17.0.15"), else None."""
    try:
        with open(os.path.join(home, "release")) as f:
            text = f.read()
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(?:1\.)?(\d+)', text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _spark_jars() -> Optional[str]:
    try:
        import pyspark
    except ImportError:
        return None
    jars = os.path.join(os.path.dirname(os.path.realpath(pyspark.__file__)), "jars")
    return jars if os.path.isdir(jars) else None


def archive_path() -> Optional[str]:
    """Where the archive for this Java and this pyspark lives; None if none can be used."""
    if _disabled():
        return None
    home = java_home()
    if home is None or (java_major(home) or 0) < _MIN_JAVA_FOR_DYNAMIC_ARCHIVE:
        return None
    jars = _spark_jars()
    if jars is None:
        return None
    digest = hashlib.sha256()
    with open(os.path.join(home, "release"), "rb") as f:
        digest.update(f.read())
    digest.update(home.encode())
    digest.update(jars.encode())
    for path in sorted(glob.glob(os.path.join(jars, "*.jar"))):
        stat = os.stat(path)
        digest.update(f"{os.path.basename(path)}:{stat.st_size}:{int(stat.st_mtime)}\n".encode())
    return os.path.join(cache_dir(), f"spark-classes-{digest.hexdigest()[:16]}.jsa")


def _record_path(archive: str) -> str:
    return archive[:-len(".jsa")] + ".json"


def prune_stale(directory: Optional[str] = None) -> List[str]:
    """Removes archives whose pyspark jars directory is gone (an old venv or clone)."""
    removed = []
    for record in glob.glob(os.path.join(directory or cache_dir(), "spark-classes-*.json")):
        try:
            with open(record) as f:
                jars = json.load(f)["jars"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if os.path.isdir(jars):
            continue
        for path in (record[:-len(".json")] + ".jsa", record):
            with contextlib.suppress(OSError):
                os.remove(path)
                removed.append(path)
    return removed


def is_archive(path: str) -> bool:
    """A complete-looking dynamic CDS archive (magic number, not tiny)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        return head == _DYNAMIC_MAGIC and os.path.getsize(path) > (1 << 20)
    except OSError:
        return False


def java_options(input_bytes: int) -> List[str]:
    """JVM options for a driver JVM the job launches for `input_bytes` of raw CSV."""
    options = ["-XX:TieredStopAtLevel=1"] if c1_only(input_bytes) else []
    path = archive_path()
    if path and is_archive(path):
        options.append(f"-XX:SharedArchiveFile={path}")
    return options


@dataclasses.dataclass
class Build:
    """An archive being dumped by the JVM this process launches, published on `finish`."""

    path: str
    temporary: str

    @property
    def option(self) -> str:
        # Without -Xlog the dump lists every class it skips (signed jars, old
        # class-file versions): hundreds of warnings, none actionable.
        return f"-XX:ArchiveClassesAtExit={self.temporary} -Xlog:cds=off -Xlog:cds+dynamic=off"


def start_build() -> Optional[Build]:
    """A Build if an archive can be made here and none exists yet."""
    path = archive_path()
    if path is None or is_archive(path):
        return None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".jsa.tmp")
        os.close(handle)
        os.remove(temporary)  # the JVM creates it at exit
    except OSError:
        return None
    return Build(path, temporary)


def stop_launched_jvm() -> Optional[int]:
    """Stops the driver JVM pyspark launched in this process; its exit code.

    pyspark's gateway JVM exits when its stdin closes (PythonGatewayServer);
    the JVM writes a requested archive while exiting, so this waits for it.
    A later session in this process launches a new JVM. None if pyspark
    launched none (no gateway, or one started by spark-submit).
    """
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None) if gateway is not None else None
    if proc is None:
        return None
    try:
        gateway.shutdown()
    except Exception:  # the JVM is going away anyway
        pass
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        code = proc.wait(timeout=_DUMP_TIMEOUT_S)
    except Exception:
        proc.kill()
        code = proc.wait()
    SparkContext._gateway = None
    SparkContext._jvm = None
    return code


def finish(build: Build) -> bool:
    """Publishes the archive the exited JVM wrote (atomically); True if it did."""
    try:
        if is_archive(build.temporary):
            os.replace(build.temporary, build.path)
            with open(_record_path(build.path), "w") as f:  # for prune_stale
                json.dump({"jars": _spark_jars(), "java_home": java_home()}, f)
            return True
        return False
    finally:
        if os.path.exists(build.temporary):
            os.remove(build.temporary)


def main(argv: Optional[List[str]] = None) -> int:
    """Builds the archive (if missing) by curating the bundled data once."""
    import argparse

    parser = argparse.ArgumentParser(description="Builds the Spark class-data-sharing archive "
                                                 "that speeds up the curation job's JVM start-up.")
    parser.add_argument("--quiet", action="store_true", help="print nothing when it exists")
    flags = parser.parse_args(argv)
    path = archive_path()
    if path is None:
        if not flags.quiet:
            print("Spark class archive: not used here (needs Java 13+, pyspark and "
                  f"{ARCHIVE_ENV} not off)")
        return 0
    for stale in prune_stale(os.path.dirname(path)):
        print(f"Spark class archive: removed {stale} (its pyspark installation is gone)")
    if is_archive(path):
        if not flags.quiet:
            print(f"Spark class archive: {path} (exists)")
        return 0
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        writable = os.access(os.path.dirname(path), os.W_OK)
    except OSError:
        writable = False
    if not writable:
        print(f"Spark class archive: {os.path.dirname(path)} is not writable; curation runs "
              f"without an archive (set {CACHE_ENV} to a writable directory)", file=sys.stderr)
        return 0
    from vega_datasets import local_data

    from components.spark_curation.job import run_curation

    print(f"Building the Spark class archive {path} (once; ~1 min) ...", flush=True)
    with tempfile.TemporaryDirectory() as out:
        run_curation(local_data.seattle_weather.filepath, out, station="seattle",
                     master="local[*]", build_class_archive=True)
    if not is_archive(path):
        print("Spark class archive: the JVM did not write one; curation runs without it",
              file=sys.stderr)
        return 0
    print(f"Spark class archive: {path} ({os.path.getsize(path) / 2**20:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
