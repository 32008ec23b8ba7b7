"""Drafts a schema from a pipeline run's statistics, for review against ours.

The curated schema (schema/schema.pbtxt) is the contract; this tool only
proposes. It infers a schema with TFDV from the latest StatisticsGen output
of a pipeline root (found through ML Metadata) or from a statistics file, and
prints how the draft differs from the curated schema, feature by feature.

Usage:
  python schema/draft_from_statistics.py --pipeline-root runs/pipeline \
      [--pipeline-name rain-tomorrow] [--output /tmp/draft_schema.pbtxt]
  python schema/draft_from_statistics.py --statistics path/FeatureStats.pb

Review the printed diff, copy what you accept into schema/schema.pbtxt (keep
the physical domains), and commit it as a reviewed change.
"""
import argparse
import os
import sys
from typing import List, Optional

import tensorflow_data_validation as tfdv

CURATED_SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.pbtxt")


def latest_statistics_file(pipeline_root: str, split: str = "train") -> str:
    """FeatureStats.pb of the newest ExampleStatistics artifact in the store."""
    from ml_metadata import metadata_store
    from tfx.orchestration import metadata

    config = metadata.sqlite_metadata_connection_config(
        os.path.join(pipeline_root, "metadata.sqlite"))
    store = metadata_store.MetadataStore(config)
    artifacts = store.get_artifacts_by_type("ExampleStatistics")
    if not artifacts:
        raise FileNotFoundError(f"No StatisticsGen output recorded under {pipeline_root}; run the pipeline first.")
    newest = max(artifacts, key=lambda a: a.create_time_since_epoch)
    return os.path.join(newest.uri, f"Split-{split}", "FeatureStats.pb")


def schema_diff(curated, draft) -> List[str]:
    """Human-readable differences between two schemas, one line each."""
    lines = []
    curated_features = {f.name: f for f in curated.feature}
    draft_features = {f.name: f for f in draft.feature}
    for name in sorted(set(draft_features) - set(curated_features)):
        lines.append(f"+ {name}: in the data, not in the curated schema")
    for name in sorted(set(curated_features) - set(draft_features)):
        lines.append(f"- {name}: in the curated schema, not in the data")
    for name in sorted(set(curated_features) & set(draft_features)):
        ours, theirs = curated_features[name], draft_features[name]
        if ours.type != theirs.type:
            lines.append(f"~ {name}: type {ours.type} in schema, {theirs.type} inferred")
        if ours.presence.min_fraction != theirs.presence.min_fraction:
            lines.append(
                f"~ {name}: presence.min_fraction {ours.presence.min_fraction:g} in schema, "
                f"{theirs.presence.min_fraction:g} inferred")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pipeline-root")
    source.add_argument("--statistics", help="a FeatureStats.pb file")
    parser.add_argument("--output", default="draft_schema.pbtxt")
    flags = parser.parse_args(argv)
    stats_path = flags.statistics or latest_statistics_file(flags.pipeline_root)
    draft = tfdv.infer_schema(tfdv.load_stats_binary(stats_path))
    tfdv.write_schema_text(draft, flags.output)
    curated = tfdv.load_schema_text(CURATED_SCHEMA)
    print(f"Draft schema inferred from {stats_path} written to {flags.output}")
    differences = schema_diff(curated, draft)
    print("\n".join(differences) if differences else "No structural differences from the curated schema.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
