"""A self-contained HTML report of one pipeline run.

Written by the local runner next to the run's outputs so a person sees at a
glance what happened: component statuses and durations, a data statistics
summary, anomalies, eval metrics against thresholds (with a small inline SVG
plot), the blessing verdict and the pushed version. No external assets.
"""
import html
import os
from typing import Dict, List, Optional

from components import evaluation_results
from components.naive_baselines import reporting as naive_reporting
from pipeline.run_summary import RunSummary

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.ok{color:#17702a;font-weight:bold}.bad{color:#b00020;font-weight:bold}
.num{text-align:right;font-variant-numeric:tabular-nums}.verdict{font-size:1.2em;padding:.6em;border-radius:6px}
.verdict.ok{background:#e6f4ea}.verdict.bad{background:#fdecea}
"""


def _esc(value) -> str:
    return html.escape(str(value))


def _table(header: List[str], rows: List[List], numeric_from: int = 99) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = f"{cell:.4f}" if isinstance(cell, float) else _esc(cell)
            cells.append(f'<td class="num">{text}</td>' if i >= numeric_from else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def statistics_rows(statistics_uri: str, splits: List[str]) -> List[List]:
    """[split, feature, count, missing, mean/unique, min, max] per feature."""
    import tensorflow_data_validation as tfdv

    rows = []
    for split in splits:
        path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
        if not os.path.exists(path):
            continue
        dataset = tfdv.load_stats_binary(path).datasets[0]
        for feature in dataset.features:
            name = feature.path.step[0] if feature.path.step else feature.name
            if feature.HasField("num_stats"):
                stats = feature.num_stats
                common = stats.common_stats
                rows.append([split, name, int(dataset.num_examples), int(common.num_missing),
                             stats.mean, stats.min, stats.max])
            elif feature.HasField("string_stats"):
                stats = feature.string_stats
                common = stats.common_stats
                rows.append([split, name, int(dataset.num_examples), int(common.num_missing),
                             f"{stats.unique} unique", "", ""])
    return rows


def metrics_svg(candidate: Dict[str, float], baseline: Dict[str, float],
                thresholds: Dict[str, Dict[str, float]]) -> str:
    """Horizontal bars in [0, 1]: candidate (blue), baseline (grey), floor (red tick)."""
    names = [n for n in sorted(candidate) if 0.0 <= candidate[n] <= 1.0]
    row_h, width, left = 26, 420, 130
    height = row_h * len(names) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 70}" height="{height}" role="img">']
    for i, name in enumerate(names):
        y = 10 + i * row_h
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{_esc(name)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{candidate[name] * width:.1f}" height="10" fill="#3367d6"/>')
        if name in baseline:
            parts.append(f'<rect x="{left}" y="{y + 11}" width="{baseline[name] * width:.1f}" height="6" fill="#999"/>')
        floor = thresholds.get(name, {}).get("lower_bound")
        if floor is not None:
            x = left + floor * width
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 3}" y2="{y + 20}" stroke="#b00020" stroke-width="2"/>')
        parts.append(f'<text x="{left + width + 6}" y="{y + 10}" font-size="11">{candidate[name]:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_report(summary: RunSummary, sliced: Optional[List[dict]] = None,
                  statistics: Optional[List[List]] = None) -> str:
    """The report as an HTML string."""
    sections = [f"<h1>Pipeline {_esc(summary.pipeline_name)} — run {_esc(summary.run_id)}</h1>"]
    sections.append(_verdict(summary))
    from pipeline.run_summary import format_mlflow

    # MLflow: the pusher's run and registered version (components/experiment_tracking).
    sections += [f"<p class='mlflow'>{_esc(line)}</p>" for line in format_mlflow(summary)]
    sections.append("<h2>Components</h2>" + _table(
        ["component", "status", "seconds"],
        [[c.node_id, c.status, f"{c.seconds:.1f}"] for c in summary.components], numeric_from=2))
    if summary.split_note:  # how ExampleGen split train/eval (components/parquet_example_gen)
        sections.append(f"<h2>Train/eval split</h2><p>{_esc(summary.split_note)}</p>")
    sections.append("<h2>Data statistics</h2>" + (
        _table(["split", "feature", "examples", "missing", "mean / unique", "min", "max"],
               statistics, numeric_from=2) if statistics else "<p>No statistics for this run.</p>"))
    if summary.cleanup:
        sections.append("<h2>Clean-up at start</h2><ul>"
                        + "".join(f"<li>{_esc(n)}</li>" for n in summary.cleanup) + "</ul>")
    sections.append("<h2>Anomalies</h2>" + _anomalies(summary))
    from pipeline.run_summary import format_tuning

    tuning = format_tuning(summary)  # with --tune only
    if tuning:
        sections.append("<h2>Tuning</h2>" + "".join(f"<p>{_esc(line.strip())}</p>" for line in tuning))
    sections.append("<h2>Evaluation</h2>" + _evaluation(summary, sliced or []))
    body = "\n".join(sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Run {_esc(summary.run_id)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


def _verdict(summary: RunSummary) -> str:
    if summary.pushed:
        return f'<p class="verdict ok">Pushed model version: <code>{_esc(summary.pushed_destination)}</code></p>'
    reason = summary.push_reason or (
        "the run stopped before the Pusher" if summary.pushed is None else "not pushed")
    if summary.anomalies:
        reason = f"data anomalies stopped the run ({len(summary.anomalies)} found)"
    evaluation = summary.evaluation
    why = ""
    if evaluation is not None and not evaluation.blessed and evaluation.failures:
        why = "<ul>" + "".join(f"<li>{_esc(f)}</li>" for f in evaluation.failures) + "</ul>"
    return f'<div class="verdict bad"><p>Nothing pushed: {_esc(reason)}</p>{why}</div>'


def _anomalies(summary: RunSummary) -> str:
    drift = ("" if summary.drift_note is None else
             f"<p>Drift against the previous span: {_esc(summary.drift_note)}</p>")
    if summary.anomalies is None:
        return "<p>Validation did not run.</p>" + drift
    if not summary.anomalies:
        return '<p class="ok">No anomalies against the curated schema.</p>' + drift
    return _table(["split", "feature", "anomaly", "description"],
                  [[a.split, a.feature, a.anomaly, a.description] for a in summary.anomalies]) + drift


def _evaluation(summary: RunSummary, sliced: List[dict]) -> str:
    evaluation = summary.evaluation
    if evaluation is None:
        return "<p>The Evaluator did not run.</p>"
    candidate = evaluation.metrics.get(evaluation_results.CANDIDATE, {})
    baseline = evaluation.metrics.get(evaluation_results.BASELINE, {})
    rows = []
    for name in sorted(set(candidate) | set(evaluation.undefined)):
        rule = evaluation.thresholds.get(name, {})
        value = (f"undefined ({evaluation.undefined[name]})" if name in evaluation.undefined
                 else candidate[name])
        rows.append([name, value, baseline.get(name, ""),
                     rule.get("lower_bound", ""), rule.get("max_decrease", "")])
    met = ("all blocking thresholds met (per-station warnings below)" if evaluation.warnings
           else "all thresholds met")
    verdict = (f'<p class="ok">Blessed: {met}'
               + (" against the latest blessed model" if evaluation.has_baseline
                  else " (first model, no baseline: absolute thresholds only)") + "</p>"
               if evaluation.blessed else
               '<p class="bad">Not blessed:</p><ul>'
               + "".join(f"<li>{_esc(f)}</li>" for f in evaluation.failures) + "</ul>")
    from pipeline.run_summary import eval_size, train_eval_gap

    parts = [verdict,
             f"<p>Eval examples: {_esc(eval_size(evaluation))}</p>",
             f"<p>Train/eval gap: {_esc(train_eval_gap(summary))}</p>",
             _table(["metric", "candidate", "baseline", "min value", "max decrease vs baseline"], rows, 1),
             metrics_svg(candidate, baseline, evaluation.thresholds),
             naive_reporting.report_html(evaluation, summary.naive_baselines, sliced),
             _slice_gates(evaluation)]
    if sliced:
        sliced = sorted(sliced, key=_slice_order)
        keys = sorted({k for row in sliced for k in row if k != "slice"})
        parts.append("<h3>Per slice (candidate)</h3>" + _table(
            ["slice"] + keys, [[row["slice"]] + [row.get(k, "") for k in keys] for row in sliced], 1))
    return "\n".join(parts)


def _slice_gates(evaluation: evaluation_results.EvaluationSummary) -> str:
    """The per-station gates: one row per station, failing ones in red."""
    from pipeline.run_summary import slice_gate_result

    gates = evaluation.slice_gates
    if gates is None:
        return ""
    parts = [f"<h3>Per-station gates</h3><p>{_esc(gates.describe())}</p>"]
    if gates.slices:
        rows = []
        for gate in gates.slices:
            failing = gate.status in (evaluation_results.FAILED, evaluation_results.UNDEFINED)
            cls = ' class="bad"' if failing else (
                ' class="ok"' if gate.status == evaluation_results.PASSED else "")
            auc = "undefined" if gate.auc is None else f"{gate.auc:.4f}"
            examples = "?" if gate.examples is None else gate.examples
            rows.append(f"<tr><td>{_esc(gate.name)}</td><td class=\"num\">{_esc(examples)}</td>"
                        f"<td class=\"num\">{_esc(auc)}</td>"
                        f"<td{cls}>{_esc(slice_gate_result(gate, gates))}</td>"
                        f"<td>{_esc(gate.message)}</td></tr>")
        parts.append("<table><tr><th>slice</th><th>eval examples</th><th>auc</th><th>result</th>"
                     "<th>detail</th></tr>" + "".join(rows) + "</table>")
    if evaluation.warnings:
        parts.append('<p class="bad">Report only (--slice-gates warn), the blessing was not '
                     "refused:</p><ul>" + "".join(f"<li>{_esc(w)}</li>" for w in evaluation.warnings)
                     + "</ul>")
    return "\n".join(parts)


def _slice_order(row: dict):
    """Overall first, then by slice column, numeric values in numeric order."""
    if row["slice"] == "Overall":
        return (0, "", 0, "")
    column, _, value = row["slice"].partition("=")
    return (1, column, int(value) if value.isdigit() else 0, value)


def write_report(summary: RunSummary, output_dir: str) -> str:
    """Renders the report for `summary` into `output_dir`; returns its path."""
    sliced = (evaluation_results.sliced_metrics(summary.evaluation_uri)
              if summary.evaluation_uri else None)
    statistics = (statistics_rows(summary.statistics_uri, summary.statistics_splits)
                  if summary.statistics_uri else None)
    os.makedirs(output_dir, exist_ok=True)
    safe_run_id = "".join(c if c.isalnum() or c in "-_" else "-" for c in summary.run_id)
    path = os.path.join(output_dir, f"run-{safe_run_id}.html")
    with open(path, "w") as f:
        f.write(render_report(summary, sliced, statistics))
    return path
