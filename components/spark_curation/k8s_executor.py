"""Executor entrypoint for Spark executor pods started from the pipeline image.

Spark on Kubernetes starts an executor pod with the argument `executor` and
the environment below, expecting the image entrypoint of Spark's own images
(`entrypoint.sh`) to turn them into a JVM command. The pipeline image has
pyspark but no such entrypoint, so the executor pod template
(`cluster.executor_pod_template`) runs this module instead; it builds the
same command as Spark 3.5's `entrypoint.sh` (executor branch) with pyspark's
bundled jars and execs it:

  java <SPARK_JAVA_OPT_0..n> -Xms<mem> -Xmx<mem> -cp <conf>:<pyspark>/jars/*
       org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
       --driver-url ... --executor-id ... --cores ... --app-id ...
       --hostname <pod IP> --resourceProfileId ... --podName ...
"""
import os
import re
import shutil
import sys
from typing import List, Mapping, Optional

EXECUTOR_BACKEND = "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
# (flag, environment variable Spark sets on the executor pod)
_ARGUMENTS = (
    ("--driver-url", "SPARK_DRIVER_URL"),
    ("--executor-id", "SPARK_EXECUTOR_ID"),
    ("--cores", "SPARK_EXECUTOR_CORES"),
    ("--app-id", "SPARK_APPLICATION_ID"),
    ("--hostname", "SPARK_EXECUTOR_POD_IP"),
    ("--resourceProfileId", "SPARK_RESOURCE_PROFILE_ID"),
    ("--podName", "SPARK_EXECUTOR_POD_NAME"),
)
_JAVA_OPT = re.compile(r"^SPARK_JAVA_OPT_([0-9]+)$")


def spark_home() -> str:
    """SPARK_HOME if set, else the pyspark package directory (its jars/ are Spark's)."""
    if os.environ.get("SPARK_HOME"):
        return os.environ["SPARK_HOME"]
    import pyspark

    return os.path.dirname(os.path.abspath(pyspark.__file__))


def executor_command(environ: Mapping[str, str], home: str, java: str = "java") -> List[str]:
    """The executor JVM command for Spark's executor-pod environment (pure).

    Raises:
      ValueError: a variable Spark always sets is missing (not in an executor pod).
    """
    missing = [name for _, name in _ARGUMENTS if not environ.get(name)]
    if not environ.get("SPARK_EXECUTOR_MEMORY"):
        missing.append("SPARK_EXECUTOR_MEMORY")
    if missing:
        raise ValueError(f"not a Spark executor pod: {', '.join(missing)} unset.")
    classpath = [environ.get("SPARK_CLASSPATH") or "", os.path.join(home, "jars", "*")]
    if environ.get("SPARK_EXTRA_CLASSPATH"):
        classpath.append(environ["SPARK_EXTRA_CLASSPATH"])
    if environ.get("HADOOP_CONF_DIR"):
        classpath.insert(0, environ["HADOOP_CONF_DIR"])
    # Spark mounts its conf ConfigMap at SPARK_CONF_DIR (/opt/spark/conf).
    classpath.insert(0, environ.get("SPARK_CONF_DIR") or os.path.join(home, "conf"))
    if environ.get("SPARK_DIST_CLASSPATH"):
        classpath.append(environ["SPARK_DIST_CLASSPATH"])
    options = sorted(
        ((int(m.group(1)), value) for name, value in environ.items() if (m := _JAVA_OPT.match(name))),
    )
    memory = environ["SPARK_EXECUTOR_MEMORY"]
    command = [java, *(value for _, value in options), f"-Xms{memory}", f"-Xmx{memory}",
               "-cp", ":".join(part for part in classpath if part), EXECUTOR_BACKEND]
    for flag, name in _ARGUMENTS:
        command += [flag, environ[name]]
    return command


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        return os.path.join(java_home, "bin", "java")
    return shutil.which("java") or "java"


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["executor"]:
        print(f"usage: python -m {__spec__.name if __spec__ else __name__} executor "
              "(started by Spark in an executor pod)", file=sys.stderr)
        return 2
    try:
        command = executor_command(os.environ, spark_home(), _java())
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
