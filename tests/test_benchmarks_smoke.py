"""The benchmark harness end to end at its smoke size (asserts results, never speed)."""
import json

import pytest

from benchmarks import run_benchmarks

SMOKE_MEASUREMENTS = {
    "curation", "ingest_ours", "ingest_ours_strdate", "ingest_stock_strdate", "ingest_floor",
    "ingest_floor_write", "etl_ours",
}


@pytest.mark.slow
def test_smoke_benchmark_writes_every_measurement(tmp_path):
    output = tmp_path / "results"
    assert run_benchmarks.main(["--smoke", "--output", str(output),
                                "--work-dir", str(tmp_path / "work")]) == 0

    results = json.loads((output / "results.json").read_text())
    (size,) = run_benchmarks.SMOKE_SIZES
    measured = {(m["name"], m["size"]): m for m in results["measurements"]}
    assert set(measured) == {(name, size) for name in SMOKE_MEASUREMENTS} | {
        ("ingest_stock_date", size)}
    for name in SMOKE_MEASUREMENTS:
        record = measured[name, size]
        assert record["status"] == "ok", record["error"]
        assert record["seconds"] > 0 and record["rows_per_s"] > 0 and record["peak_rss_mb"] > 0
        assert record["rows"] > 0
    # The stock executor's crash on DATE columns is recorded, not hidden.
    crash = measured["ingest_stock_date", size]
    assert crash["status"] == "failed" and "datetime.date" in crash["error"]

    stations, days = run_benchmarks.grid(size)
    checks = results["checks"][str(size)]
    assert checks["passed"] and checks["counts_match"] and checks["ours_keep_every_zero"]
    assert checks["parquet_rows"] == stations * (days - 1)
    assert set(checks["examples"].values()) == {checks["parquet_rows"]}
    assert checks["zeros"]["ours"] == checks["parquet_zeros"] > 0
    assert checks["stock_lost_zeros"] == checks["parquet_zeros"] - checks["zeros"]["stock_strdate"]

    markdown = (output / "results.md").read_text()
    assert "| ingest_ours | 200 |" in markdown and "## Targets" in markdown
    assert results["machine"]["logical_cores"] > 0 and results["machine"]["packages"]["tfx"]


def test_string_date_copy_replaces_an_earlier_copy(tmp_path):
    """Spark's part names differ per run: an old copy must not be read (and counted) again."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    def span(name, days):
        source = tmp_path / name
        source.mkdir()
        dates = [datetime.date(2020, 1, 1) + datetime.timedelta(days=d) for d in range(days)]
        pq.write_table(pa.table({"date": pa.array(dates, pa.date32())}),
                       str(source / f"part-00000-{name}.parquet"))
        return str(source)

    target = str(tmp_path / "strdate")
    run_benchmarks.write_string_date_copy(span("first-run", 3), target)
    run_benchmarks.write_string_date_copy(span("second-run", 5), target)
    table = pq.read_table(target)
    assert table.num_rows == 5
    assert table.schema.field("date").type == pa.string()
    assert table.column("date")[0].as_py() == "2020-01-01"


def test_merged_results_name_every_earlier_run_and_its_cpu():
    from benchmarks import report

    machine = {"cpu": "CPU B", "logical_cores": 2, "ram_gib": 24, "os": "Debian", "python": "3.10",
               "java": "17", "packages": {}}
    results = {"date": "2026-11-26", "command": "run --merge", "machine": machine,
               "measurements": [], "checks": {},
               "previous_runs": [{"date": "2026-11-23", "command": "first run", "cpu": "CPU A"}]}
    text = report.markdown(results)
    assert "Machine: CPU B" in text
    assert "- 2026-11-23 · `first run` · CPU A" in text
