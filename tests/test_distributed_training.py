"""Distributed training, quick layer: TF_CONFIG, strategy choice, the launcher's monitoring.

The launcher is exercised with stand-in worker commands (small Python
processes that print, exit with a code, sleep or get killed), so its
failure and timeout handling is checked in seconds; the real TensorFlow
workers run in tests/test_distributed_training_slow.py.
"""
import json
import os
import signal
import sys
import textwrap
import time

import pytest

from components import distributed_training as dt
from components.distributed_training import launcher
from components.distributed_training import spec as spec_lib
from components.distributed_training import tf_config as tfc


def _spec(tmp_path, **overrides):
    values = dict(train_files=[str(tmp_path / "train*")], eval_files=[str(tmp_path / "eval*")],
                  transform_graph_path=str(tmp_path / "tg"), serving_model_dir=str(tmp_path / "serving"),
                  model_run_dir=str(tmp_path / "run"), train_steps=10, eval_steps=2,
                  hparams={"batch_size": 8})
    values.update(overrides)
    return spec_lib.TrainingSpec(**values)


def test_local_tf_configs_give_each_worker_its_task_on_distinct_loopback_ports():
    configs = tfc.local_tf_configs(3)

    addresses = configs[0]["cluster"]["worker"]
    assert len(addresses) == 3 and len(set(addresses)) == 3
    assert all(a.startswith("127.0.0.1:") and int(a.split(":")[1]) > 0 for a in addresses)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)
    assert [tfc.is_chief(c) for c in configs] == [True, False, False]
    assert [tfc.shard_of(c) for c in configs] == [(3, 0), (3, 1), (3, 2)]
    with pytest.raises(ValueError):
        tfc.local_tf_configs(2, ports=[5000, 5000])


def test_free_ports_are_bindable():
    import socket

    for port in tfc.free_ports(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_tfjob_tf_config_matches_the_training_operator_format():
    # pkg/controller.v1/tensorflow/tensorflow.go (v1.9.0): <job>-<type>-<i>.<ns>.svc:2222,
    # replica types lower-cased, environment "cloud".
    replicas = {"Chief": 1, "Worker": 2}
    config = tfc.tfjob_tf_config("rain-train", "kubeflow-user", replicas, "Worker", 1)

    assert config == {
        "cluster": {"chief": ["rain-train-chief-0.kubeflow-user.svc:2222"],
                    "worker": ["rain-train-worker-0.kubeflow-user.svc:2222",
                               "rain-train-worker-1.kubeflow-user.svc:2222"]},
        "task": {"type": "worker", "index": 1},
        "environment": "cloud",
    }
    pods = [("Chief", 0), ("Worker", 0), ("Worker", 1)]
    configs = [tfc.tfjob_tf_config("j", "ns", replicas, kind, i) for kind, i in pods]
    assert [tfc.is_chief(c) for c in configs] == [True, False, False]
    assert sorted(tfc.shard_of(c) for c in configs) == [(3, 0), (3, 1), (3, 2)]
    assert tfc.training_tasks(configs[0]) == 3


def test_no_tf_config_is_one_single_chief_process():
    assert tfc.parse(None) == {} and tfc.parse("") == {}
    assert tfc.is_chief({}) and tfc.shard_of({}) == (1, 0) and tfc.task_label({}) == "single"


def test_strategy_from_config():
    assert dt.strategy_from_config(None) == (1, "single")
    assert dt.strategy_from_config({"train_workers": 2}) == (2, "multi_worker")
    assert dt.strategy_from_config({"train_strategy": "mirrored"}) == (1, "mirrored")
    assert dt.strategy_from_config({"train_workers": 1, "train_strategy": "multi_worker"}) == (1, "multi_worker")
    for bad in ({"train_workers": 2, "train_strategy": "mirrored"}, {"train_strategy": "ps"},
                {"train_workers": 0, "train_strategy": "single"}):
        with pytest.raises(ValueError):
            dt.strategy_from_config(bad)


def test_spec_round_trips_and_rejects_zero_steps(tmp_path):
    spec = _spec(tmp_path)
    path = spec.write(str(tmp_path / "spec.json"))
    assert spec_lib.TrainingSpec.read(path) == spec
    assert spec.log_path("worker-1") == str(tmp_path / "run" / "workers" / "worker-1.log")
    with pytest.raises(ValueError, match="train_steps"):
        _spec(tmp_path, train_steps=0)


def _fake_command(script_by_index):
    """Stand-in worker i runs script_by_index[i] (Python source) instead of TensorFlow."""
    def command(spec_path, index):
        return [sys.executable, "-c", textwrap.dedent(script_by_index[index])]
    return command


PRINT_TF_CONFIG = """
import os, sys
print("TF_CONFIG=" + os.environ["TF_CONFIG"])
sys.exit(0)
"""


def test_launcher_runs_every_worker_with_its_tf_config_and_logs_to_its_file(tmp_path):
    spec = _spec(tmp_path)
    result = launcher.launch(spec, 2, timeout_seconds=60,
                             command=_fake_command([PRINT_TF_CONFIG, PRINT_TF_CONFIG]))

    assert result.workers == 2
    assert result.log_paths == [spec.log_path("worker-0"), spec.log_path("worker-1")]
    configs = []
    for path in result.log_paths:
        with open(path) as log:
            configs.append(json.loads(log.read().strip().split("TF_CONFIG=", 1)[1]))
    assert [c["task"]["index"] for c in configs] == [0, 1]
    assert configs[0]["cluster"] == configs[1]["cluster"]
    assert spec_lib.TrainingSpec.read(os.path.join(spec.workers_dir(), "spec.json")) == spec
    assert result.evidence == [None, None]  # the stand-ins write none


SLEEPER = """
import time
print("sleeping", flush=True)
time.sleep(120)
"""


def test_a_failing_worker_stops_the_others_and_is_named_with_code_and_log_tail(tmp_path):
    failing = """
import sys, time
time.sleep(1)
for i in range(40):
    print(f"line {i}")
print("ValueError: something broke in worker one", flush=True)
sys.exit(3)
"""
    group = launcher.WorkerGroup(_spec(tmp_path), 2, str(tmp_path / "spec.json"),
                                 timeout_seconds=60, command=_fake_command([SLEEPER, failing]))
    started = time.monotonic()
    with pytest.raises(launcher.WorkerFailedError) as failure:
        group.start().wait()

    assert time.monotonic() - started < 30
    message = str(failure.value)
    assert failure.value.worker == 1 and failure.value.exit_code == 3
    assert "worker 1 of 2" in message and "exit code 3" in message
    assert "ValueError: something broke in worker one" in message
    assert "line 39" in message and "line 0\n" not in message  # the tail, not the whole log
    assert group.members[0].process.returncode == -signal.SIGKILL  # the sleeper was stopped


def test_a_killed_worker_is_reported_with_its_signal(tmp_path):
    group = launcher.WorkerGroup(_spec(tmp_path), 2, str(tmp_path / "spec.json"),
                                 timeout_seconds=60, command=_fake_command([SLEEPER, SLEEPER]))
    group.start()
    deadline = time.monotonic() + 30
    while "sleeping" not in open(group.members[0].log_path).read() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(group.members[0].process.pid, signal.SIGKILL)
    with pytest.raises(launcher.WorkerFailedError) as failure:
        group.wait()

    assert failure.value.worker == 0
    assert "exit code -9 (killed by SIGKILL)" in str(failure.value)
    assert "sleeping" in str(failure.value)
    assert group.members[1].process.returncode is not None


def test_workers_that_never_finish_hit_the_bounded_timeout(tmp_path):
    group = launcher.WorkerGroup(_spec(tmp_path), 2, str(tmp_path / "spec.json"),
                                 timeout_seconds=3, command=_fake_command([SLEEPER, SLEEPER]))
    started = time.monotonic()
    with pytest.raises(launcher.TrainingTimeoutError, match=r"within 3 s: worker 0 .*worker 1"):
        group.start().wait()

    assert time.monotonic() - started < 15
    assert all(member.process.returncode == -signal.SIGKILL for member in group.members)


def test_describe_exit():
    assert launcher.describe_exit(2) == "exit code 2"
    assert launcher.describe_exit(-15) == "exit code -15 (killed by SIGTERM)"


def test_run_fn_dispatch_helpers():
    assert not dt.wants_distributed(None)
    assert not dt.wants_distributed({"batch_size": 32, "train_workers": 1})
    assert dt.wants_distributed({"train_workers": 2})
    assert dt.wants_distributed({"train_strategy": "mirrored"})
    assert dt.wants_distributed({"train_workers": 2, "tfjob": {"namespace": "ns"}})
    assert dt.hparams_of({"batch_size": 32, "seed": 1, "train_workers": 2, "train_timeout_seconds": 9,
                          "tfjob": {}}) == {"batch_size": 32, "seed": 1}
    import types

    name = dt.tfjob_name(types.SimpleNamespace(model_run_dir="/minio/b/p/run-1/Trainer/model_run"))
    other = dt.tfjob_name(types.SimpleNamespace(model_run_dir="/minio/b/p/run-2/Trainer/model_run"))
    assert name != other and name.startswith("rain-train-") and len(name) <= 63
    from components.distributed_training import tfjob

    assert tfjob._DNS1035.match(name)


def test_workers_die_when_the_launcher_is_killed(tmp_path):
    """A launcher killed with SIGKILL (no clean-up possible) takes its workers with it."""
    import subprocess

    pid_file = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import sys, textwrap
        sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
        from components.distributed_training import launcher, spec as spec_lib
        spec = spec_lib.TrainingSpec(train_files=["x"], eval_files=["x"], transform_graph_path="x",
                                     serving_model_dir={str(tmp_path / "s")!r},
                                     model_run_dir={str(tmp_path / "run")!r}, train_steps=1, eval_steps=1)
        command = lambda spec_path, index: [sys.executable, "-c", "import time; time.sleep(120)"]
        group = launcher.WorkerGroup(spec, 2, {str(tmp_path / "spec.json")!r}, command=command).start()
        open({str(pid_file)!r}, "w").write(" ".join(str(m.process.pid) for m in group.members))
        group.wait()
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
    parent.kill()
    parent.wait()

    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid):
    """True while `pid` runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
