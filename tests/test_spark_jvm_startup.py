"""Issue #11: the curation job's driver JVM starts with the C1-only JIT for
small inputs and with a class-data-sharing archive of Spark's classes once
one is built (components/spark_curation/jvm_startup.py).

The slow test builds a real archive with the real JVM and then checks that a
fresh curation's JVM maps it and runs with the options.
"""
import json
import os
import subprocess
import sys

import pytest

from components.spark_curation import jvm_startup

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAGIC = bytes.fromhex("a8ab0bf0")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(jvm_startup.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(jvm_startup.ARCHIVE_ENV, raising=False)
    return tmp_path / "cache"


def write_archive(path, head=MAGIC, size=2 << 20):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(head + b"\0" * (size - len(head)))


def test_java_major_reads_the_release_file(tmp_path):
    (tmp_path / "release").write_text('IMPLEMENTOR="Debian"\nJAVA_VERSION="17.0.15"\n')
    assert jvm_startup.java_major(str(tmp_path)) == 17
    (tmp_path / "release").write_text('JAVA_VERSION="1.8.0_392"\n')
    assert jvm_startup.java_major(str(tmp_path)) == 8
    assert jvm_startup.java_major(str(tmp_path / "missing")) is None


def test_c1_only_for_small_inputs_only(cache):
    assert jvm_startup.java_options(48_000)[:1] == ["-XX:TieredStopAtLevel=1"]
    assert "-XX:TieredStopAtLevel=1" not in jvm_startup.java_options(4 * 2**20)


def test_archive_used_only_when_complete_and_not_switched_off(cache, monkeypatch):
    path = jvm_startup.archive_path()
    assert path is not None and path.startswith(str(cache)), path  # Java 17 and pyspark here
    assert not any(o.startswith("-XX:SharedArchiveFile") for o in jvm_startup.java_options(10))
    write_archive(path, head=b"\0\0\0\0")  # not an archive
    assert not any(o.startswith("-XX:SharedArchiveFile") for o in jvm_startup.java_options(10))
    write_archive(path, size=4096)  # truncated
    assert not jvm_startup.is_archive(path)
    write_archive(path)
    assert f"-XX:SharedArchiveFile={path}" in jvm_startup.java_options(10)
    monkeypatch.setenv(jvm_startup.ARCHIVE_ENV, "off")
    assert jvm_startup.archive_path() is None
    assert jvm_startup.java_options(10) == ["-XX:TieredStopAtLevel=1"]
    assert jvm_startup.start_build() is None


def test_finish_publishes_only_a_complete_archive_and_prune_drops_foreign_ones(cache):
    build = jvm_startup.start_build()
    assert build is not None and not os.path.exists(build.temporary)
    assert "-XX:ArchiveClassesAtExit=" + build.temporary in build.option
    write_archive(build.temporary, head=b"junk")
    assert jvm_startup.finish(build) is False
    assert not os.path.exists(build.temporary) and not os.path.exists(build.path)
    write_archive(build.temporary)
    assert jvm_startup.finish(build) is True and jvm_startup.is_archive(build.path)
    with open(build.path[:-4] + ".json") as f:
        assert os.path.isdir(json.load(f)["jars"])
    assert jvm_startup.start_build() is None  # exists: nothing to build
    # An archive of a pyspark installation that is gone (an old clone) is pruned; ours stays.
    stale = os.path.join(str(cache), "spark-classes-0000000000000000.jsa")
    write_archive(stale)
    with open(stale[:-4] + ".json", "w") as f:
        json.dump({"jars": str(cache / "gone" / "jars")}, f)
    assert sorted(jvm_startup.prune_stale(str(cache))) == sorted([stale, stale[:-4] + ".json"])
    assert jvm_startup.is_archive(build.path)


_PROBE = """
import json, sys, tempfile
from vega_datasets import local_data
from pyspark import SparkContext
from components.spark_curation.job import run_curation
with tempfile.TemporaryDirectory() as out:
    result = run_curation(local_data.seattle_weather.filepath, out, station="seattle")
pid = SparkContext._gateway.proc.pid  # the JVM stays up until this process exits
with open(f"/proc/{pid}/maps") as f:
    maps = f.read()
with open(f"/proc/{pid}/cmdline", "rb") as f:
    argv = f.read().decode().split("\\0")
print(json.dumps({"rows": result.rows_written, "maps": maps, "argv": argv}))
"""


@pytest.mark.slow
def test_built_archive_is_mapped_by_the_next_curation_jvm(tmp_path):
    env = {**os.environ, jvm_startup.CACHE_ENV: str(tmp_path / "cache")}
    env.pop(jvm_startup.ARCHIVE_ENV, None)
    build = subprocess.run([sys.executable, "-m", "components.spark_curation.jvm_startup"],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "[warning][cds]" not in build.stdout + build.stderr  # the dump's skip list is off
    archives = list((tmp_path / "cache").glob("spark-classes-*.jsa"))
    assert len(archives) == 1 and jvm_startup.is_archive(str(archives[0])), build.stdout
    assert not list((tmp_path / "cache").glob("*.tmp")), "the temporary dump was left behind"
    again = subprocess.run([sys.executable, "-m", "components.spark_curation.jvm_startup"],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "(exists)" in again.stdout, again.stdout + again.stderr

    probe = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=900)
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["rows"] == 1460
    assert str(archives[0]) in seen["maps"]  # the JVM mapped the archive: classes come from it
    assert f"-XX:SharedArchiveFile={archives[0]}" in seen["argv"]
    assert "-XX:TieredStopAtLevel=1" in seen["argv"]  # 48 kB of CSV: C1 only


def test_an_unwritable_cache_is_reported_and_nothing_is_built(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the cache directory would be
    monkeypatch.setenv(jvm_startup.CACHE_ENV, str(blocker / "cache"))
    monkeypatch.delenv(jvm_startup.ARCHIVE_ENV, raising=False)
    assert jvm_startup.main([]) == 0
    err = capsys.readouterr().err
    assert "is not writable" in err and jvm_startup.CACHE_ENV in err
    assert jvm_startup.start_build() is None
