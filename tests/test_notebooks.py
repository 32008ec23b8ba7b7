"""Both notebooks execute headless against real pipeline runs, cell errors fail."""
import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


def _execute(name, pipeline_root, probe):
    """Runs a notebook with `pipeline_root` injected; returns the probe cell's JSON."""
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1, "exactly one cell must be tagged 'parameters'"
    parameters[0].source += f"\npipeline_root = {pipeline_root!r}\n"
    notebook.cells.append(nbformat.v4.new_code_cell(f"import json\nprint(json.dumps({probe}))"))
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": NOTEBOOKS}}).execute()
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output
    return json.loads(notebook.cells[-1].outputs[0]["text"])


def test_data_exploration_notebook(pipeline_runs):
    probe = ('{"summary": len(summary_table), "anomalies": anomalies_table.to_dict("records"), '
             '"spans": spans, "drift": drift_table.to_dict("records"), '
             '"transformed": list(transformed_table.index)}')
    result = _execute("data_exploration.ipynb", pipeline_runs.pipeline_root, probe)
    assert result["summary"] > 20
    # The latest run read the span with injected wind values.
    assert any(a["feature"] == "wind" for a in result["anomalies"])
    assert result["spans"][:2] == [2, 1]
    assert any(d["feature"] == "wind" for d in result["drift"]), result["drift"]
    assert "temp_max_xf" in result["transformed"]


def test_model_analysis_notebook(pipeline_runs):
    probe = ('{"metrics": metrics_table.to_dict(), "blessed": summary.blessed, '
             '"failures": summary.failures, "slices": list(slices_table.index)}')
    result = _execute("model_analysis.ipynb", pipeline_runs.pipeline_root, probe)
    # The latest evaluation is the worse candidate's, compared with a baseline.
    assert set(result["metrics"]) == {"candidate", "baseline"}
    assert result["blessed"] is False and result["failures"]
    assert "Overall" in result["slices"]
    assert any(s.startswith("month=") for s in result["slices"])
    assert any(s.startswith("station=") for s in result["slices"])
