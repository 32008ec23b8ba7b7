"""The blessing's margin over persistence, and its record beside TFMA's results.

BaselineAwareEvaluator (components/serving_baseline) judges the candidate
after TFMA has: with a margin m (`--min-margin-over-persistence`), a
candidate whose overall eval AUC is below persistence's AUC + m is not
blessed. The judgement is written as `naive_baselines_gate.json` into the
Evaluator's ModelEvaluation directory, with the baselines themselves, so
`components/evaluation_results.summarize` (read by the run summary, the
report, the pusher and the notebook) finds the refusal and the baselines
next to TFMA's own results and every reader gives the same verdict.

Outcomes (`status`):
  passed       candidate AUC >= persistence AUC + margin;
  failed       below it: the blessing is refused (`message` says by how much);
  not applied  persistence's AUC is undefined (the eval split holds one
               class, or no precipitation), or the candidate's is: the rule
               cannot be checked, the blessing is not refused by it, and the
               summary, report and Evaluator log say so. (A one-class eval
               split is refused anyway by the overall thresholds.)
  off          no margin configured (`--min-margin-over-persistence off`):
               the baselines are reported only.
"""
import json
import os
import uuid
from typing import Optional

from tfx.dsl.io import fileio
from tfx.utils import io_utils

from components.naive_baselines import baselines as naive

GATE_FILE = "naive_baselines_gate.json"
PASSED, FAILED, NOT_APPLIED, OFF = "passed", "failed", "not applied", "off"
FLAG = "--min-margin-over-persistence"


def judge(baselines: dict, candidate_auc: Optional[float], margin: Optional[float],
          candidate_note: Optional[str] = None) -> dict:
    """The gate's record for one evaluation.

    Args:
      baselines: the baselines.json dict.
      candidate_auc: the candidate's overall eval AUC (None: undefined).
      margin: how far above persistence's AUC the candidate must be (may be
        negative: "at most this much below"); None: the gate is off.
      candidate_note: why the candidate's AUC is undefined, if it is.
    """
    persistence = (baselines.get("baselines", {}).get(naive.PERSISTENCE) or {})
    persistence_auc = persistence.get("auc")
    record = {"margin": margin, "candidate_auc": candidate_auc,
              "persistence_auc": persistence_auc, "required_auc": None,
              "baselines": baselines}
    if margin is None:
        return dict(record, status=OFF, message=(
            f"off ({FLAG} off): the naive baselines are reported, the blessing does not "
            "depend on them"))
    if persistence_auc is None:
        why = persistence.get("auc_note") or "no AUC recorded"
        return dict(record, status=NOT_APPLIED, message=(
            f"persistence AUC undefined ({why}), so the margin over persistence ({margin:+g}) "
            "is not checked: this rule does not refuse the blessing"))
    required = persistence_auc + margin
    record["required_auc"] = required
    if candidate_auc is None:
        return dict(record, status=NOT_APPLIED, message=(
            f"candidate AUC undefined ({candidate_note or 'not computed'}), so the margin over "
            f"persistence is not checked here (the overall AUC thresholds decide)"))
    comparison = (f"candidate AUC {candidate_auc:.4f} {{}} persistence AUC {persistence_auc:.4f} "
                  f"+ margin {margin:g} = {required:.4f}")
    if candidate_auc >= required:
        return dict(record, status=PASSED, message=comparison.format(">="))
    return dict(record, status=FAILED, message=(
        comparison.format("<") + f" ({FLAG}): the model does not beat \"rain tomorrow if it "
        f"rained today\" by the required margin (short by {required - candidate_auc:.4f})"))


def write_record(evaluation_uri: str, record: dict) -> str:
    """Writes the record beside TFMA's results (temporary file, then rename)."""
    path = os.path.join(evaluation_uri, GATE_FILE)
    staging = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    io_utils.write_string_file(staging, json.dumps(record, indent=2, sort_keys=True, allow_nan=False))
    fileio.rename(staging, path, overwrite=True)
    return path


def read_record(evaluation_uri: str) -> Optional[dict]:
    """The gate's record of an evaluation (None: evaluated without naive baselines)."""
    path = os.path.join(evaluation_uri, GATE_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        return json.loads(f.read())


def refuses(record: Optional[dict]) -> bool:
    return bool(record) and record.get("status") == FAILED


def describe(record: dict) -> str:
    """'block: candidate AUC >= persistence AUC + 0.05' / 'off (...)'."""
    margin = record.get("margin")
    if margin is None:
        return "off: baselines reported only"
    return f"candidate AUC >= persistence AUC {margin:+g} ({FLAG} {margin:g})"


def comparison_line(candidate_auc: Optional[float], baselines: dict) -> str:
    """'Candidate AUC 0.7500 | persistence 0.7140 | climatology 0.6200 | linear 0.7820'."""
    aucs = naive.overall_aucs(baselines)
    return " | ".join([f"Candidate AUC {naive.format_auc(candidate_auc)}"]
                      + [f"{name} {naive.format_auc(aucs[name])}" for name in naive.BASELINE_NAMES])
