"""The local runner's console: its own lines on the terminal, everything else in a log file.

`quiet_output(log_path)` redirects file descriptors 1 and 2 (and Python's
`sys.stdout`/`sys.stderr`) into a log file for the duration of a run, so
TensorFlow's C++ start-up lines, absl/Beam warnings, Keras output and the
Spark JVM's console output (the JVM inherits the descriptors when it starts)
land there. The runner keeps writing to the console it had before, through
the returned `Console`: a duplicate of the original descriptor when that was
the terminal (fd 1/2), or the original stream object itself otherwise (e.g.
pytest's capture or `contextlib.redirect_stdout`).

`report_components(console)` prints a line when each TFX component starts and
ends (status, seconds) by wrapping the Launcher that TFX's LocalDagRunner
creates per node; on a terminal the start line counts the seconds in place
while the component runs, elsewhere a "still running" line is printed every
`HEARTBEAT_SECONDS`.
"""
import contextlib
import io
import logging
import os
import sys
import threading
import time
from typing import Callable, Iterator, List, Optional, TextIO, Tuple

HEARTBEAT_SECONDS = 30.0
TICK_SECONDS = 1.0
NAME_WIDTH = 18


class Console:
    """Where the runner's own lines go: `out` (progress, summary) and `err` (errors)."""

    def __init__(self, out: TextIO, err: TextIO, log_path: Optional[str] = None):
        self.out = out
        self.err = err
        self.log_path = log_path
        self._lock = threading.Lock()
        self._pending = False  # a start line without its newline (terminal only)

    @property
    def is_terminal(self) -> bool:
        try:
            return self.out.isatty()
        except (AttributeError, ValueError):
            return False

    def line(self, text: str = "") -> None:
        with self._lock:
            self._end_pending()
            self.out.write(text + "\n")
            self.out.flush()

    def error(self, text: str) -> None:
        with self._lock:
            self._end_pending()
            self.err.write(text + "\n")
            self.err.flush()

    def rewrite(self, text: str) -> None:
        """Terminal only: replaces the current line (no newline yet)."""
        with self._lock:
            self.out.write("\r\x1b[2K" + text)
            self.out.flush()
            self._pending = True

    def _end_pending(self) -> None:
        if self._pending:
            self.out.write("\n")
            self._pending = False


def default_console() -> Console:
    """The process's current streams, nothing redirected."""
    return Console(sys.stdout, sys.stderr)


def _console_stream(stream: TextIO, fd: int) -> TextIO:
    """A stream that keeps reaching what `stream` reaches after `fd` is redirected."""
    try:
        stream_fd = stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return stream  # not a descriptor (StringIO, pytest's sys capture): unaffected
    if stream_fd != fd:
        return stream
    stream.flush()
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(stream, "encoding", None),
                     errors="backslashreplace")


@contextlib.contextmanager
def quiet_output(log_path: str) -> Iterator[Console]:
    """Sends fds 1/2 and sys.stdout/sys.stderr to `log_path` (appended); yields the console."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    out = _console_stream(sys.stdout, 1)
    err = _console_stream(sys.stderr, 2)
    console = Console(out, err, log_path)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log = open(log_path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
    old_streams = sys.stdout, sys.stderr
    handlers = _console_log_handlers(old_streams)
    try:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        sys.stdout = sys.stderr = log
        for handler, _ in handlers:
            handler.setStream(log)
        yield console
    finally:
        for handler, stream in handlers:
            handler.setStream(stream)
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__, log):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = old_streams
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        log.close()
        for stream in (out, err):
            if stream not in old_streams:  # our duplicate of fd 1/2
                with contextlib.suppress(Exception):
                    stream.flush()
                    stream.close()


def _console_log_handlers(streams) -> List[Tuple[logging.StreamHandler, TextIO]]:
    """Logging handlers (root's, absl's) writing to the console's streams, with their stream.

    A handler keeps the stream it was created with: in a process whose
    sys.stderr is not fd 2 (a test's capture, an embedding program) the fd
    redirect would not reach it, so it is pointed at the log explicitly.
    """
    targets = {id(s) for s in (*streams, sys.__stdout__, sys.__stderr__) if s is not None}
    found = []
    for logger in (logging.getLogger(), logging.getLogger("absl")):
        for handler in logger.handlers:
            handler = getattr(handler, "python_handler", handler)  # absl's wrapper
            if (isinstance(handler, logging.StreamHandler)
                    and id(getattr(handler, "stream", None)) in targets
                    and all(handler is not h for h, _ in found)):
                found.append((handler, handler.stream))
    return found


class _Step:
    """One running step: its start line, and a ticker while it runs."""

    def __init__(self, console: Console, name: str,
                 clock: Callable[[], float] = time.monotonic,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS):
        self.console = console
        self.name = name
        self.clock = clock
        self.heartbeat_seconds = heartbeat_seconds
        self.started = clock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self.console.is_terminal:
            self.console.rewrite(f"  {self.name:<{NAME_WIDTH}} running")
        else:
            self.console.line(f"  {self.name:<{NAME_WIDTH}} started")
        self._thread = threading.Thread(target=self._tick, name=f"progress-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        terminal = self.console.is_terminal
        interval = TICK_SECONDS if terminal else self.heartbeat_seconds
        while not self._stop.wait(interval):
            seconds = self.clock() - self.started
            if terminal:
                self.console.rewrite(f"  {self.name:<{NAME_WIDTH}} running {seconds:4.0f} s")
            else:
                self.console.line(f"  {self.name:<{NAME_WIDTH}} still running ({seconds:.0f} s)")

    def finish(self, status: str) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        seconds = self.clock() - self.started
        if self.console.is_terminal:
            self.console.rewrite(f"  {self.name:<{NAME_WIDTH}} {status:<9} {seconds:6.1f} s")
            self.console.line()
        else:
            self.console.line(f"  {self.name:<{NAME_WIDTH}} {status:<9} {seconds:6.1f} s")
        return seconds


@contextlib.contextmanager
def step(console: Console, name: str, heartbeat_seconds: float = HEARTBEAT_SECONDS):
    """Start/end lines around a block that is not a TFX component (e.g. curation).

    The block may set `holder["status"]`; an exception prints FAILED and propagates.
    """
    running = _Step(console, name, heartbeat_seconds=heartbeat_seconds)
    running.start()
    holder = {"status": "done"}
    try:
        yield holder
    except BaseException:
        running.finish("FAILED")
        raise
    running.finish(holder["status"])


@contextlib.contextmanager
def report_components(console: Console, heartbeat_seconds: float = HEARTBEAT_SECONDS):
    """Prints start/end lines for each node TFX's LocalDagRunner launches, while active.

    LocalDagRunner creates one `launcher.Launcher` per node and calls
    `launch()`; a node whose executor was called is COMPLETE, one answered
    from the cache (or a system node such as a resolver) CACHED/RESOLVED.
    The wrapper is installed in the runner module only and removed on exit.
    """
    from tfx.orchestration.local import local_dag_runner
    from tfx.orchestration.portable import launcher as launcher_module

    base = launcher_module.Launcher

    class ReportingLauncher(base):
        _executed = False

        def _run_executor(self, *args, **kwargs):
            self._executed = True
            return super()._run_executor(*args, **kwargs)

        def launch(self):
            node_id = self._pipeline_node.node_info.id
            running = _Step(console, node_id, heartbeat_seconds=heartbeat_seconds)
            running.start()
            try:
                info = super().launch()
            except BaseException:
                running.finish("FAILED")
                raise
            if self._system_node_handler:
                status = "RESOLVED"
            else:
                status = "COMPLETE" if self._executed else "CACHED"
            running.finish(status)
            return info

    class _Module:
        Launcher = ReportingLauncher

        def __getattr__(self, name):
            return getattr(launcher_module, name)

    original = local_dag_runner.launcher
    local_dag_runner.launcher = _Module()
    try:
        yield
    finally:
        local_dag_runner.launcher = original
