"""Crashes, signals and resumes: no trial left RUNNING, no completed trial lost, no candidate replayed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_plugins import install_fake_distribution

import automl
from automl.cli import main
from automl.errors import UsageError
from automl.heartbeat import DEAD_REASON, WORKER_ATTR
from automl.registry import get_registry
from automl.runner import StudyRunner

SLOW_PLUGIN = '''
import os, sys, time
import automl
from automl import Option


class Slow(automl.Evaluator):
    """Sleeps, then scores the number of convolutions; ``exit_on`` calls sys.exit for that trial number."""

    name = "slow"
    options = {"seconds": Option(float, default=0.2, min=0.0), "exit_code": Option(int, default=-1)}

    def metrics(self):
        return ["convs"]

    def evaluate(self, candidate, context):
        if self.settings["exit_code"] >= 0:
            sys.exit(self.settings["exit_code"])
        time.sleep(self.settings["seconds"])
        return {"convs": float(candidate.attrs["arch"].count("conv"))}


@automl.hookimpl
def register_evaluators(register):
    register(Slow)
'''


def space_text(seconds: float, n_trials: int = 40, exit_code: int = -1) -> str:
    return f"""
[study]
name = "crash"
n_trials = {n_trials}
seed = 0
sampler = "random"
[task]
name = "digits"
batch_size = 8
image_size = 8
[[dimensions]]
name = "nb201"
channels = 4
cells_per_stage = 1
[evaluator]
name = "slow"
seconds = {seconds}
exit_code = {exit_code}
[[objectives]]
metric = "convs"
"""


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    install_fake_distribution(folder, "automl_slow", "automl_slow", SLOW_PLUGIN, "slow")
    return folder


def start_run(site: Path, cwd: Path, storage: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.Popen(
        [sys.executable, "-m", "automl", "run", "space.toml", "--storage", storage, "--quiet", *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def trials_of(storage: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="crash", storage=automl.storage.open_storage(storage)).get_trials()
    except KeyError:
        return []


def wait_for(condition, timeout: float = 120.0) -> None:
    """Poll ``condition`` (the study's state, on disk) until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the search"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite:///crash.db", "runs/sub/crash.log"])
def test_kill_9_at_random_moments_loses_nothing_and_resume_leaves_nothing_running(site, tmp_path, storage):
    # Trials long enough that a kill soon after one is seen RUNNING lands inside it, even on a loaded machine.
    (tmp_path / "space.toml").write_text(space_text(0.8, n_trials=12))
    rng = random.Random(0)
    completed_before: set[int] = set()
    for _ in range(3):
        process = start_run(site, tmp_path, storage)
        have = len(completed_before)
        wait_for(lambda have=have: sum(t.state == TrialState.COMPLETE for t in trials_of(storage)) > have)
        wait_for(lambda: any(t.state == TrialState.RUNNING for t in trials_of(storage)))
        time.sleep(rng.uniform(0.0, 0.2))  # a random moment inside a trial
        process.kill()
        process.wait()
        done = {t.number for t in trials_of(storage) if t.state == TrialState.COMPLETE}
        assert completed_before <= done  # nothing completed is ever lost
        completed_before = done
    finish = start_run(site, tmp_path, storage)
    _, err = finish.communicate(timeout=300)
    assert finish.returncode == 0, err
    assert "left running by a worker that died" in err
    trials = trials_of(storage)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    dead = [t for t in trials if t.state == TrialState.FAIL]
    assert dead and all(t.user_attrs["failure"] == DEAD_REASON for t in dead)
    assert sum(t.state != TrialState.RUNNING for t in trials) >= 12
    assert completed_before <= {t.number for t in trials if t.state == TrialState.COMPLETE}


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_end_the_running_trial_as_interrupted(site, tmp_path, sig, code):
    (tmp_path / "space.toml").write_text(space_text(5.0, n_trials=3))
    storage = "sqlite:///signal.db"
    process = start_run(site, tmp_path, storage)
    wait_for(lambda: any(WORKER_ATTR in t.user_attrs for t in trials_of(storage)))
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "interrupted; every finished trial is stored" in err and "Traceback" not in err
    (trial,) = trials_of(storage)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["failure"] == f"interrupted ({signal.Signals(sig).name})"


@pytest.mark.slow
def test_sys_exit_in_a_plugin_fails_its_trial_as_interrupted(site, tmp_path):
    (tmp_path / "space.toml").write_text(space_text(0.0, n_trials=3, exit_code=3))
    process = start_run(site, tmp_path, "sqlite:///exit.db")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 3, err
    (trial,) = trials_of("sqlite:///exit.db")
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["failure"] == "interrupted: the evaluation called sys.exit(3)"


def test_a_dead_workers_trial_is_failed_and_optionally_retried(nb201_space_dict, storage):
    runner = StudyRunner(automl.SearchSpace.from_dict(nb201_space_dict), storage=storage, cache=False)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(finished.stdout)
    trial = runner.study.ask()
    runner.space.sample(trial)  # the dead worker had sampled its candidate
    trial.set_user_attr(WORKER_ATTR, {"host": automl.heartbeat.HOST, "pid": dead_pid, "beat": time.time()})
    alive = runner.study.ask()
    alive.set_user_attr(WORKER_ATTR, {"host": automl.heartbeat.HOST, "pid": os.getpid() + 10**6, "beat": time.time()})
    # A worker on another host is dead only once its beat is older than the grace period.
    other = runner.study.ask()
    other.set_user_attr(WORKER_ATTR, {"host": "elsewhere", "pid": 1, "beat": time.time() - 3600})

    again = StudyRunner(automl.SearchSpace.from_dict(nb201_space_dict), storage=storage, cache=False, retry_dead=True)
    assert again.dead_trials == [trial.number, alive.number, other.number] or again.dead_trials == [
        trial.number,
        other.number,
    ]
    states = {t.number: t for t in again.study.get_trials()}
    assert states[trial.number].state == TrialState.FAIL
    assert states[trial.number].user_attrs["failure"] == DEAD_REASON
    assert states[other.number].user_attrs["failure"] == DEAD_REASON
    retried = again.run_trial()
    assert retried.user_attrs["retry_of"] == trial.number
    assert retried.params["nb201.e01"] == states[trial.number].params["nb201.e01"]


def test_a_live_trial_of_this_process_is_left_alone(nb201_space_dict, storage):
    runner = StudyRunner(automl.SearchSpace.from_dict(nb201_space_dict), storage=storage, cache=False)
    trial = runner.study.ask()
    trial.set_user_attr(WORKER_ATTR, {"host": automl.heartbeat.HOST, "pid": os.getpid(), "beat": time.time()})
    again = StudyRunner(automl.SearchSpace.from_dict(nb201_space_dict), storage=storage, cache=False)
    assert again.dead_trials == []


def test_a_budget_run_in_steps_proposes_as_many_distinct_candidates_as_in_one_go(nb201_space_dict, storage):
    nb201_space_dict["study"]["n_trials"] = 12

    def distinct(study):
        return len({t.user_attrs["candidate"]["id"] for t in study.trials})

    one = automl.search(nb201_space_dict, storage=storage, study_name="one", cache=False)
    for _ in range(3):
        steps = automl.search(nb201_space_dict, storage=storage, study_name="steps", n_trials=4, cache=False)
    assert len(steps.trials) == len(one.trials) == 12
    assert distinct(steps) == distinct(one) == 12


def test_editing_a_choice_list_of_an_existing_study_is_refused_before_any_trial(
    nb201_space_dict, storage, tmp_path, capsys
):
    automl.search(nb201_space_dict, storage=storage, n_trials=2, cache=False)
    nb201_space_dict["dimensions"][0]["operations"] = ["nor_conv_3x3", "skip_connect"]
    with pytest.raises(UsageError, match=r"dimensions\[0\]\.operations changed"):
        StudyRunner(automl.SearchSpace.from_dict(nb201_space_dict), storage=storage, cache=False)
    assert len(optuna.load_study(study_name="t", storage=storage).trials) == 2


class _Flaky(automl.Proxy):
    """Raises on its first call, then scores; infinite when told to."""

    name = "flaky"
    applies_to = ("cell",)
    options = {"infinite": automl.Option(bool, default=False)}
    calls = 0

    def score(self, candidate, batch):
        type(self).calls += 1
        if self.settings["infinite"]:
            return float("inf")
        if type(self).calls == 1:
            raise RuntimeError("the GPU was busy")
        return 1.0


class _FlakyPlugin:
    @staticmethod
    @automl.hookimpl
    def register_proxies(register):
        register(_Flaky)


def _flaky_space(nb201_space_dict, **options):
    assert get_registry().add_plugin(_FlakyPlugin(), "flaky", "test", "0")
    nb201_space_dict["evaluator"] = {"name": "proxies", "proxies": ["flaky"], "proxy_options": {"flaky": options}}
    nb201_space_dict["objectives"] = [{"metric": "flaky", "direction": "maximize"}]
    return automl.SearchSpace.from_dict(nb201_space_dict)


def test_a_transient_failure_is_not_cached(nb201_space_dict, storage, tmp_path):
    _Flaky.calls = 0
    space = _flaky_space(nb201_space_dict)
    runner = StudyRunner(space, storage=storage, cache=str(tmp_path / "c.db"))
    params = runner.run_trial().params
    first = runner.study.trials[0]
    assert first.state == TrialState.FAIL and "the GPU was busy" in first.user_attrs["failure"]
    second = runner.run_trial(params)
    assert second.state == TrialState.COMPLETE and second.value == 1.0
    assert second.user_attrs["result"]["cached"] is False
    assert runner.run_trial(params).user_attrs["result"]["cached"] is True


def test_a_non_finite_objective_fails_the_trial(nb201_space_dict, storage):
    space = _flaky_space(nb201_space_dict, infinite=True)
    trial = StudyRunner(space, storage=storage, cache=False).run_trial()
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["failure"] == "flaky is inf: an objective must be finite"


@pytest.mark.parametrize("device", ["nope", "cuda:7"])
def test_an_unusable_device_is_refused_before_any_trial(tmp_path, capsys, device):
    (tmp_path / "space.toml").write_text(
        space_text(0.0)
        .replace('name = "slow"', 'name = "proxies"\nproxies = ["params"]')
        .replace("seconds = 0.0\nexit_code = -1\n", "")
        .replace('"convs"', '"params"')
    )
    code = main(["run", "space.toml", "--storage", "sqlite:///d.db", "--device", device, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"automl: error: --device {device!r}")
    assert not Path("d.db").exists() or not optuna.get_all_study_summaries("sqlite:///d.db")
