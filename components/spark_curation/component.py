"""SparkCuration: the Spark curation job as a pipeline task (Kubeflow).

On Kubeflow the raw CSVs are curated inside the pipeline, in the pipeline's
image, by Spark in local mode; ExampleGen runs after this task (an
upstream-node edge, see `pipeline.pipeline.create_pipeline`'s
`data_preparation`) and reads the curated spans by path, so the task has no
output artifact. Raw data that was curated before is recognised by its sha256
and skipped, which makes the task cheap to repeat on a schedule.
"""
from typing import List, Optional

from absl import logging
from tfx import v1 as tfx

from components.spark_curation.job import CurationResult, run_curation


def split_raw_data(raw_data: str) -> List[str]:
    """'a.csv, raw/*.csv' -> ['a.csv', 'raw/*.csv']: paths/globs, comma-separated."""
    return [path.strip() for path in raw_data.split(",") if path.strip()]


def curate(
    raw_data: str, output_dir: str, station: Optional[str], spark_master: str
) -> CurationResult:
    """Runs the curation job for the component's string parameters.

    Args:
      raw_data: raw CSV path, glob, or a comma-separated list of them.
      output_dir: the data root that holds `curated/` and `quarantine/`.
      station: station id for CSVs without a station column; '' means none
        (a pipeline parameter cannot be None).
      spark_master: Spark master URL, e.g. 'local[*]'.

    Returns:
      The job's CurationResult.

    Raises:
      CurationError: the job's own message naming the file and the problem
        (no matching file, missing columns, every row quarantined, ...).
    """
    result = run_curation(
        split_raw_data(raw_data), output_dir, station=station or None, master=spark_master
    )
    logging.info("Spark curation: %s", result.summary())
    return result


@tfx.dsl.components.component
def SparkCuration(
    raw_data: tfx.dsl.components.Parameter[str],
    output_dir: tfx.dsl.components.Parameter[str],
    station: tfx.dsl.components.Parameter[str] = "",
    spark_master: tfx.dsl.components.Parameter[str] = "local[*]",
) -> None:
    """Curates `raw_data` into a new span under `<output_dir>/curated/`."""
    curate(raw_data, output_dir, station, spark_master)
