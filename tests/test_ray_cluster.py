"""A Ray cluster of two nodes on this machine (a head and a second node started with ``ray start``):
``automl run --ray-address`` schedules the search's trials on both, and each trial records its node."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import optuna
import pytest
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
STOP_GRACE_S = 5

SPACE = """
[study]
name = "cluster"
n_trials = 4
seed = 0
sampler = "random"

[task]
name = "digits"
batch_size = 16
image_size = 8

[[dimensions]]
name = "nb201"
channels = 4
cells_per_stage = 1

[evaluator]
name = "training"
epochs = 2
max_train_samples = 64
batch_size = 32

[[objectives]]
metric = "val_accuracy"
direction = "maximize"

[strategy]
name = "ray_tune"
cpus = 1
max_concurrent_trials = 2
scheduler = "fifo"
"""


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def processes_using(folder: str) -> list[int]:
    """The processes whose command line names ``folder``: every process of the cluster started there."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if folder.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue  # ended meanwhile
    return found


def stop_cluster(folder: str) -> list[int]:
    """Stop this cluster's processes only (``ray stop`` would stop every Ray on the machine): SIGTERM,
    wait for them to exit up to ``STOP_GRACE_S`` seconds, then SIGKILL. Returns what had to be killed."""
    waiting = {}
    for pid in processes_using(folder):
        try:
            waiting[pid] = os.pidfd_open(pid)
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    wait_for_exit(waiting, STOP_GRACE_S)
    killed = list(waiting)
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for_exit(waiting, STOP_GRACE_S)
    return killed


def wait_for_exit(waiting: dict[int, int], timeout: float) -> None:
    """Wait until the processes (pid: pidfd) have exited, at most ``timeout`` seconds; drop those that did."""
    deadline = time.monotonic() + timeout
    while waiting and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(waiting.values()), [], [], left)
        for pid, fd in list(waiting.items()):
            if fd in ready:
                os.close(waiting.pop(pid))


@pytest.fixture
def cluster():
    """A head (resource ``head``) and a second node (resource ``worker``), one CPU each; yields the address."""
    # Short: Ray's socket paths under it must fit in 107 bytes.
    folder = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    port, dashboard, agent_head, agent_worker = free_ports(4)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

    def ray(*args: str) -> None:
        done = subprocess.run([*RAY, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    try:
        ray("start", "--head", f"--port={port}", "--num-cpus=1",
            '--resources={"head": 1}', f"--temp-dir={folder}", "--include-dashboard=false",
            f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={agent_head}", "--disable-usage-stats")  # fmt: skip
        ray("start", f"--address=127.0.0.1:{port}", "--num-cpus=1",
            '--resources={"worker": 1}', f"--dashboard-agent-listen-port={agent_worker}",
            "--disable-usage-stats")  # fmt: skip
        yield f"127.0.0.1:{port}", folder
    finally:
        stop_cluster(folder)
        left = processes_using(folder)
        shutil.rmtree(folder, ignore_errors=True)
    assert left == []


def test_a_search_on_a_two_node_cluster_runs_trials_on_both_nodes(cluster, tmp_path):
    address, folder = cluster
    (tmp_path / "space.toml").write_text(SPACE)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "automl", "run", "space.toml", "--ray-address", address, "--storage", storage]
        + ["--no-cache", "--quiet"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    search_s = time.perf_counter() - started
    trials = optuna.load_study(study_name="cluster", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, [t.user_attrs.get("failure") for t in trials]
    nodes = {t.user_attrs["ray"]["node_id"] for t in trials}
    # Two trials at a time, one CPU per trial and per node: the scheduler has to use both nodes.
    assert len(nodes) == 2, [t.user_attrs["ray"] for t in trials]
    # One machine: both nodes have its address.
    assert len({t.user_attrs["ray"]["node_ip"] for t in trials}) == 1 and trials[0].user_attrs["ray"]["node_ip"]
    assert all(t.user_attrs["ray"]["threads"] == 1 for t in trials)
    # The nodes are this cluster's: each raylet's log folder is under the cluster's temp folder.
    sessions = [p for p in os.listdir(folder) if p.startswith("session_2")]
    assert len(sessions) == 1
    print(json.dumps({"search_s": round(search_s, 1), "nodes": sorted(nodes)}))
