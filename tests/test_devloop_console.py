"""The quiet console: library output to the run's log, the runner's own lines on the console."""
import os
import subprocess
import sys
import textwrap

import pytest

import local_runner
from pipeline import console as console_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(script: str, tmp_path):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO))


def test_quiet_output_sends_fd_level_python_and_child_output_to_the_log(tmp_path):
    log = tmp_path / "logs" / "run.log"
    done = _python(f"""
        import os, subprocess, sys
        from pipeline.console import quiet_output
        print("before", flush=True)
        with quiet_output({str(log)!r}) as console:
            print("python stdout noise")
            print("python stderr noise", file=sys.stderr)
            os.write(1, b"fd1 noise\\n")
            os.write(2, b"fd2 noise\\n")
            subprocess.run(["sh", "-c", "echo child noise; echo child err >&2"])
            console.line("progress line")
            console.error("error line")
        print("after", flush=True)
        print("after err", file=sys.stderr, flush=True)
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["before", "progress line", "after"]
    assert done.stderr.splitlines() == ["error line", "after err"]
    text = log.read_text()
    for noise in ("python stdout noise", "python stderr noise", "fd1 noise", "fd2 noise",
                  "child noise", "child err"):
        assert noise in text
    assert "progress line" not in text and "after" not in text


def test_quiet_output_keeps_a_non_descriptor_console_and_restores_on_error(tmp_path):
    import io

    import logging

    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    # A handler created while stderr was `err` (like absl's, made at import time).
    handler = logging.StreamHandler(err)
    logging.getLogger().addHandler(handler)
    try:
        with pytest.raises(RuntimeError):
            with console_lib.quiet_output(str(tmp_path / "x.log")) as console:
                print("noise")
                logging.getLogger("some.library").warning("library warning")
                console.line("mine")
                raise RuntimeError("boom")
        assert (sys.stdout, sys.stderr) == (out, err)
        assert handler.stream is err
    finally:
        logging.getLogger().removeHandler(handler)
        sys.stdout, sys.stderr = saved
    assert out.getvalue() == "mine\n" and err.getvalue() == ""
    assert (tmp_path / "x.log").read_text() == "noise\nlibrary warning\n"


def test_step_lines_on_a_pipe_start_end_and_heartbeat(tmp_path):
    import io
    import time

    out = io.StringIO()
    console = console_lib.Console(out, out)
    with console_lib.step(console, "Slow", heartbeat_seconds=0.05) as status:
        time.sleep(0.18)
        status["status"] = "COMPLETE"
    with pytest.raises(ValueError):
        with console_lib.step(console, "Broken"):
            raise ValueError("x")
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["Slow", "started"]
    assert any(line.split()[:3] == ["Slow", "still", "running"] for line in lines[1:-3])
    assert lines[-3].split()[:2] == ["Slow", "COMPLETE"] and lines[-3].endswith(" s")
    assert float(lines[-3].split()[2]) >= 0.18
    assert lines[-2].split() == ["Broken", "started"]
    assert lines[-1].split()[:2] == ["Broken", "FAILED"]


def test_quiet_run_logs_library_output_and_prints_only_runner_lines(tmp_path, monkeypatch, capfd):
    def noisy_run(flags, run_id):
        os.write(2, b"2026 I tensorflow/core/util/port.cc:113] oneDNN custom operations\n")
        print("WARNING:absl:library warning", file=sys.stderr)
        local_runner._say("runner line")
        return local_runner.EXIT_OK

    monkeypatch.setattr(local_runner, "_run", noisy_run)
    runs = tmp_path / "runs"
    assert local_runner.main(["--runs-dir", str(runs)]) == 0
    captured = capfd.readouterr()
    assert "runner line" in captured.out
    assert "oneDNN" not in captured.out + captured.err
    assert "WARNING:absl" not in captured.out + captured.err
    (log_line,) = [line for line in captured.out.splitlines() if line.startswith("Log: ")]
    log_path = log_line.split()[1]
    assert os.path.dirname(log_path) == str(runs / "pipeline" / local_runner.LOGS_DIR)
    text = open(log_path).read()
    assert "oneDNN custom operations" in text and "WARNING:absl:library warning" in text

    # --verbose: everything on the console, no log file.
    assert local_runner.main(["--runs-dir", str(runs), "--verbose"]) == 0
    captured = capfd.readouterr()
    assert "oneDNN" in captured.err and "WARNING:absl:library warning" in captured.err
    assert "Log: " not in captured.out


def test_quiet_run_error_is_one_line_on_the_console_with_the_traceback_in_the_log(
        tmp_path, monkeypatch, capfd):
    def broken(flags, run_id):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_runner, "_run", broken)
    runs = tmp_path / "runs"
    assert local_runner.main(["--runs-dir", str(runs)]) == local_runner.EXIT_FAILED
    captured = capfd.readouterr()
    assert "Failed: OSError: [Errno 28] No space left on device" in captured.err
    assert "Traceback" not in captured.err + captured.out
    (log_dir,) = [str(runs / "pipeline" / local_runner.LOGS_DIR)]
    (name,) = os.listdir(log_dir)
    assert "Traceback (most recent call last)" in open(os.path.join(log_dir, name)).read()


@pytest.mark.slow
def test_component_lines_come_from_the_local_dag_runner(tmp_path):
    """A two-node pipeline under LocalDagRunner: a start and an end line per node, then cached."""
    script = f"""
        import io, os
        from tfx import v1 as tfx
        from pipeline.console import Console, report_components

        @tfx.dsl.components.component
        def Produce(out: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.String]):
            out.value = "x"

        @tfx.dsl.components.component
        def Consume(value: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.String]):
            pass

        root = {str(tmp_path)!r}
        produce = Produce()
        consume = Consume(value=produce.outputs["out"])
        def make():
            return tfx.dsl.Pipeline(
                pipeline_name="p", pipeline_root=os.path.join(root, "root"),
                components=[produce, consume], enable_cache=True,
                metadata_connection_config=tfx.orchestration.metadata
                    .sqlite_metadata_connection_config(os.path.join(root, "m.sqlite")))
        for attempt in range(2):
            out = io.StringIO()
            with report_components(Console(out, out)):
                tfx.orchestration.LocalDagRunner().run(make())
            print("RUN", attempt)
            print(out.getvalue(), end="")
    """
    done = _python(script, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout[done.stdout.index("RUN 0"):]
    first, second = text.split("RUN 1\n")
    assert [line.split()[:2] for line in first.splitlines()[1:]] == [
        ["Produce", "started"], ["Produce", "COMPLETE"],
        ["Consume", "started"], ["Consume", "COMPLETE"]]
    assert [line.split()[:2] for line in second.splitlines()] == [
        ["Produce", "started"], ["Produce", "CACHED"],
        ["Consume", "started"], ["Consume", "CACHED"]]
    from tfx.orchestration.local import local_dag_runner
    from tfx.orchestration.portable import launcher

    assert local_dag_runner.launcher is launcher  # the wrapper is gone afterwards


def test_console_summary_leaves_out_the_component_table_the_step_lines_gave():
    """Issue #11: the default console fits one screen; the step lines already
    said each component's status and seconds (the report keeps the table)."""
    from pipeline.run_summary import ComponentRun, RunSummary, format_run_summary

    summary = RunSummary("p", "r", [ComponentRun("Trainer", "COMPLETE", 4.0)])
    full, short = format_run_summary(summary), format_run_summary(summary, components=False)
    assert "  Trainer" in full and "status" in full
    assert "Trainer" not in short and short.startswith("Pipeline p, run r")
    assert len(full.splitlines()) - len(short.splitlines()) == 3  # header, row, blank
