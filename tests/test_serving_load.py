"""Smoke run of the serving load benchmark: correctness only, never speed.

Runs `benchmarks.serving_load` for about two seconds per phase against the
real service process (`python -m serving` on 127.0.0.1) and checks what the
full run reports: no failed request, the pushed version answered, and the
half-written and corrupt versions were rejected while the old one served.
"""
import json

import pytest

from benchmarks import serving_load


@pytest.mark.slow
def test_smoke_load_has_no_errors_swaps_and_survives_bad_versions(tmp_path):
    results = serving_load.run(2.0, str(tmp_path / "results"))

    written = json.loads((tmp_path / "results" / "serving_load.json").read_text())
    assert written["passed"] is True == results["passed"]
    assert "| hot swap | 8 |" in (tmp_path / "results" / "serving_load.md").read_text()
    assert [r["clients"] for r in results["steady"]] == [2, 8]
    for phase in results["steady"] + [results["hot_swap"], results["faults"]]:
        assert phase["requests"] > 0 and phase["errors"] == 0, phase["error_examples"]

    swap = results["hot_swap"]
    assert swap["new_version"] > swap["old_version"]
    assert set(swap["versions"]) == {str(swap["old_version"]), str(swap["new_version"])}
    assert swap["seconds_push_to_first_answer"] is not None

    faults = results["faults"]
    assert set(faults["versions"]) == {str(swap["new_version"])} == {str(faults["live_version"])}
    assert faults["states"] == {str(faults["half_written_version"]): "rejected",
                                str(faults["corrupt_version"]): "rejected"}
    assert "variables" in faults["reasons"][str(faults["half_written_version"])]
    assert any(str(faults["corrupt_version"]) in line for line in faults["service_log"])
