"""Finds a pipeline's artifacts through ML Metadata, never by guessing paths.

Used by the notebooks: "the newest statistics", "the statistics of the span
before it", "the schema that run used" are MLMD queries, so they keep working
when TFX changes its directory layout.
"""
import os
from typing import Iterator, List, Optional, Tuple

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

METADATA_FILE = "metadata.sqlite"
_DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


def open_store(pipeline_root: str) -> metadata_store.MetadataStore:
    """The SQLite ML Metadata store the local runner keeps under `pipeline_root`."""
    path = os.path.join(pipeline_root, METADATA_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No ML Metadata store at {path}: run the pipeline first (./scripts/run.sh) "
            "or point pipeline_root at a run.")
    return metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(path))


def _executions(store, pipeline_name: str, node_id: str) -> List[metadata_store_pb2.Execution]:
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if context is None:
        return []
    executions = [e for e in store.get_executions_by_context(context.id) if e.last_known_state in _DONE]
    return sorted(executions, key=lambda e: (e.create_time_since_epoch, e.id), reverse=True)


def _artifacts_of(store, execution_id: int, event_type, key: Optional[str] = None):
    events = [
        e for e in store.get_events_by_execution_ids([execution_id])
        if e.type == event_type and (key is None or e.path.steps[0].key == key)
    ]
    return store.get_artifacts_by_id([e.artifact_id for e in events]) if events else []


def outputs(store, pipeline_name: str, node_id: str, output_key: str) -> Iterator[Tuple[int, metadata_store_pb2.Artifact]]:
    """(execution id, artifact) of a node's output key, newest execution first."""
    for execution in _executions(store, pipeline_name, node_id):
        for artifact in _artifacts_of(store, execution.id, metadata_store_pb2.Event.OUTPUT, output_key):
            yield execution.id, artifact


def latest_output(store, pipeline_name: str, node_id: str, output_key: str) -> metadata_store_pb2.Artifact:
    """The newest artifact a node wrote under `output_key`; a clear error if none."""
    for _, artifact in outputs(store, pipeline_name, node_id, output_key):
        return artifact
    raise LookupError(
        f"No '{output_key}' output of {node_id} recorded for pipeline {pipeline_name}; "
        "has the pipeline run this far?")


def latest_inputs(store, pipeline_name: str, node_id: str,
                  input_key: str) -> List[metadata_store_pb2.Artifact]:
    """The artifacts the newest execution of a node read under `input_key`."""
    for execution in _executions(store, pipeline_name, node_id):
        artifacts = _artifacts_of(store, execution.id, metadata_store_pb2.Event.INPUT, input_key)
        if artifacts:
            return list(artifacts)
    raise LookupError(
        f"No '{input_key}' input of {node_id} recorded for pipeline {pipeline_name}; "
        "has the pipeline run this far?")


def input_span(store, execution_id: int) -> Optional[int]:
    """The span of the Examples an execution read."""
    for artifact in _artifacts_of(store, execution_id, metadata_store_pb2.Event.INPUT, "examples"):
        for properties in (artifact.custom_properties, artifact.properties):
            if "span" in properties:
                return properties["span"].int_value
    return None


def statistics_by_span(store, pipeline_name: str, node_id: str = "StatisticsGen") -> dict:
    """{span: newest statistics artifact computed on that span}, newest span first."""
    result = {}
    for execution_id, artifact in outputs(store, pipeline_name, node_id, "statistics"):
        span = input_span(store, execution_id)
        if span is not None and span not in result:
            result[span] = artifact
    return dict(sorted(result.items(), reverse=True))


def split_path(artifact: metadata_store_pb2.Artifact, split: str, file_name: str) -> str:
    """`<uri>/Split-<split>/<file_name>`, TFX's per-split layout."""
    return os.path.join(artifact.uri, f"Split-{split}", file_name)


ABANDONED_BY = "abandoned_note"
_UNFINISHED = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)


def fail_unfinished_executions(store, pipeline_name: str, pipeline_root: str,
                               note: str) -> List[dict]:
    """Marks the pipeline's NEW/RUNNING executions FAILED; returns what they were.

    Call it only while no run of the pipeline is alive (the local runner
    holds the run lock): an execution still RUNNING then belongs to a run
    that died (killed, out of memory) and would stay RUNNING forever.

    Returns:
      One dict per execution: id, node id, run id, previous state, and the
      output directories the run had started to write (TFX's local layout
      `<pipeline_root>/<node_id>/<output key>/<execution id>`), which are
      left in place and reported.
    """
    pipeline_context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_context is None:
        return []
    context_types = {t.id: t.name for t in store.get_context_types()}
    found = []
    for execution in store.get_executions_by_context(pipeline_context.id):
        if execution.last_known_state not in _UNFINISHED:
            continue
        node_id, run_id = "", ""
        for context in store.get_contexts_by_execution(execution.id):
            kind = context_types.get(context.type_id)
            if kind == "node" and context.name.startswith(pipeline_name + "."):
                node_id = context.name[len(pipeline_name) + 1:]
            elif kind == "pipeline_run":
                run_id = context.name
        outputs_dir = os.path.join(pipeline_root, node_id) if node_id else ""
        orphans = []
        if outputs_dir and os.path.isdir(outputs_dir):
            for key in sorted(os.listdir(outputs_dir)):
                candidate = os.path.join(outputs_dir, key, str(execution.id))
                if os.path.isdir(candidate):
                    orphans.append(candidate)
        found.append({
            "execution_id": execution.id, "node_id": node_id, "run_id": run_id,
            "state": metadata_store_pb2.Execution.State.Name(execution.last_known_state),
            "outputs": orphans,
        })
        execution.last_known_state = metadata_store_pb2.Execution.FAILED
        execution.custom_properties[ABANDONED_BY].string_value = note
        store.put_executions([execution])
    return found
