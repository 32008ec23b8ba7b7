"""The Tuner's search on the bundled data, trial by trial (issue #14).

  python -m benchmarks.tuning [--trials 6] [--work-dir DIR] [--output benchmarks/results]
                              [--raw-data CSV ... --station ID]

1. `local_runner.py --tune --tune-trials N` in a fresh runs directory (a
   fresh process, default flags otherwise): the pipeline end to end with TFX's
   Tuner; from its ML Metadata: the Tuner's and Trainer's seconds, every
   completed trial's validation AUC (`tuner_results.json`), the best
   hyper-parameters, what the Trainer recorded it trained with
   (`hyperparameters.json`), the Evaluator's AUC and whether it pushed.
2. The same search again in this process (`models.tuner.tuner_fn`, same
   seed) on that run's Transform output, to time every trial (TFX keeps only
   the scores) and to check that the seeded search repeats itself; then the
   untuned default (the flags' values: 32,16 / 0.003 / 500 steps) scored the
   same way, for comparison.

Writes <output>/tuning.json and <output>/tuning.md.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from typing import Any, Dict, List, Optional

import psutil

from benchmarks import report

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPO_ROOT, "benchmarks", "results")
DEFAULT_TRIALS = 6


def run_pipeline(runs_dir: str, trials: int, extra: List[str], log_path: str) -> Dict[str, Any]:
    """`local_runner.py --tune` in a fresh process; wall seconds and exit code."""
    command = [sys.executable, "local_runner.py", "--runs-dir", runs_dir, "--tune",
               "--tune-trials", str(trials), *extra]
    started = time.monotonic()
    with open(log_path, "w") as log:
        code = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    return {"command": " ".join(["python", *command[1:]]), "exit_code": code,
            "seconds": round(time.monotonic() - started, 1)}


def read_run(runs_dir: str) -> Dict[str, Any]:
    """What the run recorded in ML Metadata (and the Trainer's hyperparameters.json)."""
    from pipeline import artifact_lookup, node_ids
    from pipeline.config import DEFAULT_PIPELINE_NAME
    from pipeline.run_summary import collect_run_summary
    from tfx.orchestration import metadata

    pipeline_root = os.path.join(runs_dir, "pipeline")
    connection = metadata.sqlite_metadata_connection_config(
        os.path.join(pipeline_root, artifact_lookup.METADATA_FILE))
    summary = collect_run_summary(connection, DEFAULT_PIPELINE_NAME)
    store = artifact_lookup.open_store(pipeline_root)
    name = DEFAULT_PIPELINE_NAME
    model_run = artifact_lookup.latest_output(store, name, node_ids.TRAINER, "model_run")
    with open(os.path.join(model_run.uri, "hyperparameters.json")) as f:
        trainer_record = json.load(f)
    evaluation = summary.evaluation
    candidate = (evaluation.metrics.get("candidate", {}) if evaluation else {})
    return {
        "seconds": {c.node_id: round(c.seconds, 1) for c in summary.components},
        "statuses": {c.node_id: c.status for c in summary.components},
        "trials": summary.tuning_trials,
        "best_values": summary.tuned_hyperparameters,
        "trainer_record": trainer_record,
        "eval_auc": candidate.get("auc"),
        "blessed": evaluation.blessed if evaluation else None,
        "pushed": summary.pushed,
        "push_note": summary.pushed_destination if summary.pushed else summary.push_reason,
        "transformed_examples": _artifact(artifact_lookup.latest_output(
            store, name, node_ids.TRANSFORM, "transformed_examples")),
        "transform_graph": artifact_lookup.latest_output(
            store, name, node_ids.TRANSFORM, "transform_graph").uri,
        "eval_steps": trainer_record["eval_steps"],
        "custom_config": {k: v for k, v in trainer_record["hparams"].items()
                          if k in ("batch_size", "seed", "embedding_dim", "steps_per_execution")},
    }


def _artifact(artifact) -> Dict[str, str]:
    return {"uri": artifact.uri, "split_names": artifact.properties["split_names"].string_value}


def search_again(run: Dict[str, Any], trials: int, work_dir: str) -> Dict[str, Any]:
    """The run's search repeated in this process, timed trial by trial, plus the default."""
    from tfx.components.trainer import fn_args_utils
    from tfx.proto import trainer_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import json_utils, proto_utils

    from models import tuner as tuner_lib

    examples = standard_artifacts.Examples()
    examples.uri = run["transformed_examples"]["uri"]
    examples.split_names = run["transformed_examples"]["split_names"]
    graph = standard_artifacts.TransformGraph()
    graph.uri = run["transform_graph"]
    fn_args = fn_args_utils.get_common_fn_args(
        {"examples": [examples], "transform_graph": [graph]},
        {"train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(num_steps=1)),
         "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(num_steps=run["eval_steps"])),
         "custom_config": json_utils.dumps({**run["custom_config"], "tune_trials": trials})},
        working_dir=os.path.join(work_dir, "search"))
    result = tuner_lib.tuner_fn(fn_args)
    started = time.monotonic()
    result.tuner.search(**result.fit_kwargs)
    search_seconds = time.monotonic() - started
    rows = []
    for trial in sorted(result.tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        metrics = {name: trial.metrics.get_last_value(name)
                   for name in ("val_auc", "auc", "seconds") if trial.metrics.exists(name)}
        rows.append({"trial_id": trial.trial_id, "status": trial.status,
                     **trial.hyperparameters.values, **metrics})
    default = types.SimpleNamespace(
        trial_id="default", hyperparameters=types.SimpleNamespace(values={
            "hidden_units": "32,16", "learning_rate": 0.003, "train_steps": 500}))
    default_metrics = result.tuner.run_trial(default, **result.fit_kwargs)
    return {"seconds": round(search_seconds, 1), "trials": rows,
            "default": {"trial_id": "default", **default.hyperparameters.values, **default_metrics}}


def trial_key(values: Dict[str, Any]) -> tuple:
    """A trial's hyper-parameters, to match the pipeline's trials with the repeated ones."""
    rate = values.get("learning_rate")
    return (values.get("hidden_units"), None if rate is None else round(float(rate), 10),
            values.get("train_steps"))


def _f(value: Optional[float], digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def markdown(results: Dict[str, Any]) -> str:
    machine = results["machine"]
    run, again = results["pipeline"], results["search_again"]
    lines = [
        "# Tuning: the Tuner's random search on the bundled data",
        "",
        f"Measured {results['date']} on {machine['cpu']}, **{machine['logical_cores']} logical cores**, "
        f"{machine['ram_gib']} GiB; load average {results['load_average_start'][0]:.1f} at the start, "
        f"{results['load_average_end'][0]:.1f} at the end (the machine is shared). "
        f"Command: `{results['command']}`.",
        "",
        "Search space (models/tuner.py): hidden units one of 16,8 / 32,16 / 64,32; learning rate "
        "log-uniform in [0.001, 0.01]; train steps 200-800 by 200. Objective: the validation AUC "
        f"(Keras, {run.get('eval_steps')} eval batches of the eval split) after the trial's steps; "
        "random search seeded with --seed.",
        "",
        "## The pipeline run (`local_runner.py --tune`)",
        "",
        f"`{results['pipeline_run']['command']}`: exit {results['pipeline_run']['exit_code']}, "
        f"{results['pipeline_run']['seconds']:.1f} s wall (curation included).",
        "",
    ]
    if run.get("error"):
        return "\n".join(lines + [f"Could not read the run: {run['error']}", ""])
    seconds = run["seconds"]
    record = run["trainer_record"]
    lines += [
        f"- Tuner: {run['statuses'].get('Tuner')}, {_f(seconds.get('Tuner'), 1)} s for "
        f"{len(run['trials'] or [])} trials; Trainer: {_f(seconds.get('Trainer'), 1)} s.",
        f"- Best hyper-parameters: `{json.dumps(run['best_values'], sort_keys=True)}`.",
        f"- The Trainer trained with (its `hyperparameters.json`): hidden units "
        f"{record['hparams']['hidden_units']}, learning rate {record['hparams']['learning_rate']:.5g}, "
        f"{record['train_steps']} steps (tuned: {record['tuned']}).",
        f"- Evaluator (TFMA) eval AUC of the trained candidate: {_f(run['eval_auc'])}; blessed: "
        f"{run['blessed']}; pushed: {run['pushed']} ({run['push_note']}).",
        "",
        "## Every trial",
        "",
        "Validation AUC as the pipeline's Tuner recorded it (`tuner_results.json`) and as the same "
        "seeded search in a fresh tuner recorded it (with the seconds of each trial: build, "
        "training, validation; TFX does not record them).",
        "",
        "| trial | hidden units | learning rate | train steps | val AUC (pipeline) | val AUC (again) "
        "| train AUC | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    pipeline_scores = {trial_key(t): t["score"] for t in (run["trials"] or [])}
    best_key = trial_key(run["best_values"] or {})
    for row in again["trials"]:
        mark = " **best**" if trial_key(row) == best_key else ""
        lines.append(
            f"| {row['trial_id']}{mark} | {row.get('hidden_units')} | {row.get('learning_rate', 0):.5f} "
            f"| {row.get('train_steps')} | {_f(pipeline_scores.get(trial_key(row)))} "
            f"| {_f(row.get('val_auc'))} | {_f(row.get('auc'))} | {_f(row.get('seconds'), 1)} |")
    default = again["default"]
    lines.append(
        f"| default (untuned flags) | {default['hidden_units']} | {default['learning_rate']:.5f} "
        f"| {default['train_steps']} | | {_f(default.get('val_auc'))} | {_f(default.get('auc'))} "
        f"| {_f(default.get('seconds'), 1)} |")
    repeat = results.get("repeats_exactly")
    best_again = max((r.get("val_auc") or 0 for r in again["trials"]), default=None)
    lines += [
        "",
        "Notes:",
        "",
        ("- The seeded search repeated exactly: the same trials with the same validation AUCs "
         if repeat else
         "- The seeded search did NOT repeat exactly (trials or validation AUCs differ) ")
        + f"({results.get('repeat_note', '')}).",
        f"- Best trial vs the untuned default on the same validation batches: "
        f"{_f(best_again)} vs {_f(default.get('val_auc'))} "
        f"({(best_again or 0) - (default.get('val_auc') or 0):+.4f}).",
        f"- The search alone (in-process, {len(again['trials'])} trials): {again['seconds']:.1f} s.",
        "- The validation AUC is Keras' (streaming, 200 thresholds) over `eval_steps` batches of "
        "the repeating eval split; the Evaluator's AUC is TFMA's over the whole eval split, so the "
        "two differ a little.",
        "- The search selects on the eval split, the same split the Evaluator then scores the "
        "tuned model on, so the tuned model's eval AUC is optimistic by an amount not measured "
        "here (there is no third, held-out split).",
        "- Seconds depend on the load of this shared machine (see the load average above).",
        "",
    ]
    return "\n".join(lines)


def parse_flags(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--work-dir", default=None, help="runs directory and logs (default: temporary)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="where tuning.json/tuning.md go")
    parser.add_argument("runner_args", nargs="*",
                        help="further local_runner.py flags, after --, e.g. -- --seed 1")
    flags = parser.parse_args(argv)
    if flags.trials < 1:
        parser.error(f"--trials {flags.trials}: must be >= 1")
    return flags


def main(argv: Optional[List[str]] = None) -> int:
    flags = parse_flags(argv)
    work_dir = flags.work_dir or tempfile.mkdtemp(prefix="rain-tuning-")
    os.makedirs(work_dir, exist_ok=True)
    runs_dir = os.path.join(work_dir, "runs")
    shutil.rmtree(runs_dir, ignore_errors=True)
    results: Dict[str, Any] = {
        "date": report.now_iso(),
        "command": "python -m benchmarks.tuning " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": report.describe_machine(),
        "load_average_start": list(psutil.getloadavg()),
        "trials": flags.trials,
    }
    try:
        log_path = os.path.join(work_dir, "local_runner.log")
        print(f"[{report.now_iso()}] local_runner.py --tune --tune-trials {flags.trials} ...", flush=True)
        results["pipeline_run"] = run_pipeline(runs_dir, flags.trials, flags.runner_args, log_path)
        if results["pipeline_run"]["exit_code"] != 0:
            with open(log_path) as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"local_runner.py --tune failed (exit "
                               f"{results['pipeline_run']['exit_code']}); log {log_path}:\n{tail}")
        run = read_run(runs_dir)
        results["pipeline"] = run
        print(f"[{report.now_iso()}] the same search again, timed ...", flush=True)
        again = search_again(run, flags.trials, work_dir)
        results["search_again"] = again
        pipeline_scores = {trial_key(t): t["score"] for t in run["trials"] or []}
        again_scores = {trial_key(t): t.get("val_auc") for t in again["trials"]
                        if t["status"] == "COMPLETED"}
        results["repeats_exactly"] = pipeline_scores == again_scores
        results["repeat_note"] = (f"{len(pipeline_scores)} trials in the pipeline, "
                                  f"{len(again_scores)} completed again")
        results["load_average_end"] = list(psutil.getloadavg())
        os.makedirs(flags.output, exist_ok=True)
        with open(os.path.join(flags.output, "tuning.json"), "w") as f:
            json.dump(results, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        text = markdown(results)
        with open(os.path.join(flags.output, "tuning.md"), "w") as f:
            f.write(text)
        print(text)
    finally:
        if not flags.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
