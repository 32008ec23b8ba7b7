"""`run_curation` in a child process, so that the caller can work meanwhile.

`local_runner.py` imports TensorFlow and TFX (~5-8 s of one core) while the
curation's JVM runs; in one process that overlap once hung (threads
importing TensorFlow beside pyspark's), so the curation gets a process of its
own: a fresh interpreter (the `spawn` start method: nothing inherited but
the file descriptors, so its JVM and Spark output go where the caller's fds
1/2 go), which exits, JVM and all, when the curation is done.

The child's result comes back as the CurationResult; a CurationError comes
back as a CurationError with the same message; anything else (a Spark
failure, a crash) as a CurationProcessError naming it.
"""
import multiprocessing
import traceback
from typing import Any, Callable, Dict, Optional, Sequence

from components.spark_curation.contract import CurationError


class CurationProcessError(RuntimeError):
    """The curation process failed other than by rejecting the data."""


def _child_main(conn, args: Sequence[Any], kwargs: Dict[str, Any]) -> None:
    try:
        from components.spark_curation import job

        conn.send(("ok", job.run_curation(*args, **kwargs)))
    except CurationError as error:
        conn.send(("rejected", str(error)))
    except BaseException as error:  # reported to the parent, which raises it
        message = f"{type(error).__name__}: {error}"
        if getattr(error, "java_exception", None) is not None:  # py4j's Py4JJavaError
            from components.spark_curation.job import spark_failure

            message = spark_failure(error).replace("\n", " ")
        conn.send(("failed", message + "\n" + traceback.format_exc()))
    finally:
        conn.close()


def run_curation_meanwhile(args: Sequence[Any], kwargs: Dict[str, Any],
                           meanwhile: Optional[Callable[[], None]] = None):
    """`job.run_curation(*args, **kwargs)` in a child process; `meanwhile()` runs here.

    Returns the CurationResult. Raises CurationError (the data was rejected),
    CurationProcessError (anything else went wrong in the child), or what
    `meanwhile` raised (the child is stopped then).
    """
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(send, list(args), dict(kwargs)),
                              name="spark-curation", daemon=True)
    process.start()
    send.close()  # the child holds the only sending end: EOF if it dies
    try:
        if meanwhile is not None:
            meanwhile()
        try:
            kind, payload = receive.recv()
        except EOFError:
            process.join()
            raise CurationProcessError(
                f"the curation process ended without a result (exit code {process.exitcode})"
            ) from None
        process.join()
    except BaseException:
        if process.is_alive():
            process.terminate()
            process.join(10)
        raise
    finally:
        receive.close()
    if kind == "ok":
        return payload
    if kind == "rejected":
        raise CurationError(payload)
    message, _, child_traceback = payload.partition("\n")
    error = CurationProcessError(message)
    error.child_traceback = child_traceback
    raise error
