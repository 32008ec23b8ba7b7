"""The naive baselines beside the candidate, as the run summary and the report show them.

Plain functions over the baselines.json dict and an EvaluationSummary, so
pipeline/run_summary.py and pipeline/report.py each add one call.
"""
import html
from typing import Dict, List, Optional

from components.naive_baselines import baselines as naive
from components.naive_baselines import gate as naive_gate

_AUC = "auc"
_STATION = "station"


def baselines_of(evaluation, fallback: Optional[dict]) -> Optional[dict]:
    """The baselines the Evaluator judged with (its record), else the artifact's."""
    record = getattr(evaluation, "naive_baselines", None) if evaluation is not None else None
    if record and record.get("baselines"):
        return record["baselines"]
    return fallback


def candidate_auc(evaluation) -> Optional[float]:
    """The candidate's overall eval AUC (None: undefined or not evaluated)."""
    if evaluation is None or _AUC in evaluation.undefined:
        return None
    return evaluation.metrics.get("candidate", {}).get(_AUC)


def candidate_station_aucs(evaluation, sliced: Optional[List[dict]] = None) -> Dict[str, Optional[float]]:
    """{station: candidate AUC} from the per-station gates, else from sliced metrics."""
    gates = getattr(evaluation, "slice_gates", None) if evaluation is not None else None
    found = {g.value: g.auc for g in (gates.slices if gates else []) if g.column == _STATION}
    if found:
        return found
    for row in sliced or []:
        column, _, value = row.get("slice", "").partition("=")
        if column == _STATION and "," not in value:
            found[value] = row.get(_AUC)
    return found


def _table_rows(data: dict, station_aucs: Dict[str, Optional[float]]) -> List[List]:
    """[[station, examples, candidate, persistence, climatology, linear]] per eval station."""
    entries = data.get("baselines", {})
    stations = sorted({s for name in naive.BASELINE_NAMES
                       for s in (entries.get(name) or {}).get("per_station", {})})
    rows = []
    for station in stations:
        cells = [(entries.get(name) or {}).get("per_station", {}).get(station, {})
                 for name in naive.BASELINE_NAMES]
        examples = next((c.get("examples") for c in cells if c.get("examples") is not None), "?")
        # "n/a": the candidate's AUC of this station was not computed (no station slice).
        candidate = station_aucs[station] if station in station_aucs else "n/a"
        rows.append([station, examples, candidate] + [c.get("auc") for c in cells])
    return rows


def summary_lines(evaluation, fallback: Optional[dict], sliced: Optional[List[dict]] = None) -> List[str]:
    """Terminal lines: the comparison, the per-station table, the margin verdict."""
    data = baselines_of(evaluation, fallback)
    if data is None:
        return []
    notes = []
    for name in naive.BASELINE_NAMES:
        entry = data.get("baselines", {}).get(name) or {}
        if entry.get("auc") is None and entry.get("auc_note"):
            notes.append(f"  {name}: {entry['auc_note']}")
    lines = [f"Naive baselines ({data.get('eval_examples', '?')} eval examples): "
             + naive_gate.comparison_line(candidate_auc(evaluation), data)] + notes
    rows = _table_rows(data, candidate_station_aucs(evaluation, sliced))
    if len(rows) > 1:
        lines.append(f"  {'station':<20}{'examples':>10}{'candidate':>11}"
                     + "".join(f"{name:>13}" for name in naive.BASELINE_NAMES))
        for station, examples, *aucs in rows:
            candidate = aucs[0] if isinstance(aucs[0], str) else naive.format_auc(aucs[0])
            lines.append(f"  {station:<20}{examples!s:>10}{candidate:>11}"
                         + "".join(f"{naive.format_auc(a):>13}" for a in aucs[1:]))
    record = getattr(evaluation, "naive_baselines", None) if evaluation is not None else None
    if record:
        lines.append(f"Margin over persistence: {record['status']}: {record['message']}")
    return lines


def report_html(evaluation, fallback: Optional[dict], sliced: Optional[List[dict]] = None) -> str:
    """An HTML section: the comparison table (overall first, then stations) and the verdict."""
    data = baselines_of(evaluation, fallback)
    if data is None:
        return ""
    esc = html.escape
    entries = data.get("baselines", {})
    head = "".join(f"<th>{esc(h)}</th>" for h in
                   ["slice", "eval examples", "candidate"] + list(naive.BASELINE_NAMES))

    def cell(value) -> str:
        text = str(value) if isinstance(value, (int, str)) else naive.format_auc(value)
        return f'<td class="num">{esc(text)}</td>'

    overall = [cell(data.get("eval_examples", 0)), cell(candidate_auc(evaluation))] + [
        cell((entries.get(name) or {}).get("auc")) for name in naive.BASELINE_NAMES]
    body = ["<tr><td>Overall</td>" + "".join(overall) + "</tr>"]
    for station, examples, *aucs in _table_rows(data, candidate_station_aucs(evaluation, sliced)):
        body.append(f"<tr><td>station {esc(station)}</td>{cell(examples)}"
                    + "".join(cell(a) for a in aucs) + "</tr>")
    notes = [f"<li>{esc(name)}: {esc(entry['auc_note'])}</li>" for name, entry in
             ((n, entries.get(n) or {}) for n in naive.BASELINE_NAMES)
             if entry.get("auc") is None and entry.get("auc_note")]
    parts = ["<h3>Naive baselines</h3>",
             f"<p>AUC on the eval split ({esc(str(data.get('eval_examples', '?')))} examples); "
             "persistence: rain tomorrow if it rained today; climatology: the train split's rain "
             "share per station and month; linear: a logistic regression on the model's raw "
             f"features, fit on the {esc(str(data.get('train_examples', '?')))} train examples.</p>",
             f"<table><tr>{head}</tr>{''.join(body)}</table>"]
    if notes:
        parts.append("<ul>" + "".join(notes) + "</ul>")
    record = getattr(evaluation, "naive_baselines", None) if evaluation is not None else None
    if record:
        cls = {naive_gate.PASSED: "ok", naive_gate.FAILED: "bad", naive_gate.NOT_APPLIED: "bad"}.get(
            record.get("status"), "")
        parts.append(f'<p>Margin over persistence ({esc(naive_gate.describe(record))}): '
                     f'<span class="{cls}">{esc(record["status"])}</span>: {esc(record["message"])}</p>')
    return "\n".join(parts)


# The key of push_metadata.json under which the pusher records the baselines.
PUSH_METADATA_KEY = "naive_baselines"


def push_metadata(baselines_uri: str, evaluation=None) -> dict:
    """What push_metadata.json records of the naive baselines.

    {"label", "train_examples", "eval_examples", "baselines": {name: {"auc",
    "auc_note", "per_station"}} (baselines.json), "candidate_auc": the
    candidate's overall eval AUC, "margin_over_persistence": {"margin",
    "status", "message", "required_auc"} or None (evaluated without the
    gate)}.

    Raises:
      ValueError: the artifact holds no valid baselines.json.
    """
    from components.naive_baselines import artifacts

    data = artifacts.read_baselines(baselines_uri)
    if data is None:
        raise ValueError(f"The naive baselines input at {baselines_uri} holds no "
                         f"{artifacts.BASELINES_FILE}")
    record = getattr(evaluation, "naive_baselines", None) if evaluation is not None else None
    gate = None
    if record:
        gate = {key: record.get(key) for key in ("margin", "status", "message", "required_auc")}
    return dict(data, candidate_auc=candidate_auc(evaluation), margin_over_persistence=gate)
