"""Per-trial bounds: a time limit for every evaluator, and isolation in a separate process."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from test_plugins import install_fake_distribution

import automl
from automl.errors import SpaceError
from automl.registry import reset_registry
from automl.runner import StudyRunner

BOUNDED_PLUGIN = '''
import os, sys, time
import automl
from automl import Option


class Misbehaving(automl.Evaluator):
    """Scores convolutions, after misbehaving as told for cells whose first edge is ``bad_op``."""

    name = "misbehaving"
    options = {
        "bad_op": Option(str, default="none"),
        "how": Option(str, default="sleep", choices=("sleep", "exit", "leak", "crash")),
    }

    def metrics(self):
        return ["convs"]

    def evaluate(self, candidate, context):
        if candidate.params["nb201.e01"] == self.settings["bad_op"]:
            how = self.settings["how"]
            if how == "sleep":
                time.sleep(30)
            elif how == "exit":
                sys.exit(4)
            elif how == "crash":
                os.abort()
            else:
                hoard = [bytearray(64 * 2**20) for _ in range(40)]  # 2.5 GB, touched
                time.sleep(30)
        return {"convs": float(candidate.attrs["arch"].count("conv"))}


@automl.hookimpl
def register_evaluators(register):
    register(Misbehaving)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    install_fake_distribution(site, "automl_misbehaving", "automl_misbehaving", BOUNDED_PLUGIN, "misbehaving")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the isolated processes find it too
    reset_registry()
    yield
    reset_registry()


def space(**evaluator):
    return {
        "study": {"name": "bounded", "n_trials": 6, "seed": 0, "sampler": "random"},
        "task": {"name": "digits", "batch_size": 8, "image_size": 8},
        "dimensions": [
            {"name": "nb201", "channels": 4, "cells_per_stage": 1, "operations": ["nor_conv_3x3", "skip_connect"]}
        ],
        "evaluator": {"name": "misbehaving", "bad_op": "skip_connect", **evaluator},
        "objectives": [{"metric": "convs"}],
    }


BAD = "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
GOOD = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def outcomes(study):
    bad = [t for t in study.trials if t.params["nb201.e01"] == "skip_connect"]
    good = [t for t in study.trials if t.params["nb201.e01"] != "skip_connect"]
    assert bad and good, "six random trials over two first edges hit both"
    return bad, good


def test_a_trial_past_its_timeout_fails_and_the_search_goes_on(plugin, storage):
    study = automl.search(space(timeout=3.0), storage=storage, cache=False)
    bad, good = outcomes(study)
    assert all(t.state == TrialState.FAIL and t.user_attrs["failure"] == "timed out after 3 s" for t in bad)
    assert all(t.state == TrialState.COMPLETE for t in good)


def test_limit_keys_are_checked_like_every_option(plugin):
    with pytest.raises(SpaceError, match=r"evaluator\.timeout: -1\.0 is below the minimum"):
        automl.SearchSpace.from_dict(space(timeout=-1))
    with pytest.raises(SpaceError, match=r"evaluator\.memory_limit_mb: a memory limit needs isolate = true"):
        automl.SearchSpace.from_dict(space(memory_limit_mb=500))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "options", "reason"),
    [
        ("exit", {}, "interrupted: the evaluation called sys.exit(4)"),
        ("crash", {}, "the isolated evaluation ended without a result (exit code -6)"),
        ("sleep", {"timeout": 8.0}, "timed out after 8 s"),
        ("leak", {"memory_limit_mb": 800}, "the evaluation passed its memory limit of 800 MB"),
    ],
)
def test_an_isolated_evaluation_that_misbehaves_ends_its_trial_only(plugin, storage, how, options, reason):
    bounded = automl.SearchSpace.from_dict(space(isolate=True, how=how, **options))
    runner = StudyRunner(bounded, storage=storage, cache=False)
    bad = runner.run_trial(bounded.arch_params(BAD))
    good = runner.run_trial(bounded.arch_params(GOOD))  # the search goes on in the same process
    assert bad.state == TrialState.FAIL and bad.user_attrs["failure"] == reason
    assert good.state == TrialState.COMPLETE and good.value == GOOD.count("conv")
    assert good.user_attrs["result"]["costs"]["params"] > 0


def test_each_failed_trial_prints_one_line_and_verbose_adds_the_traceback(plugin, tmp_path, capsys):
    from automl.cli import main

    toml = """
[study]
name = "lines"
n_trials = 1
sampler = "random"
[task]
name = "digits"
batch_size = 8
image_size = 8
[[dimensions]]
name = "nb201"
channels = 4
cells_per_stage = 1
operations = ["skip_connect"]
[evaluator]
name = "misbehaving"
bad_op = "skip_connect"
how = "sleep"
timeout = 0.5
[[objectives]]
metric = "convs"
"""
    (tmp_path / "lines.toml").write_text(toml)
    assert main(["run", "lines.toml", "--storage", "sqlite:///l.db", "--quiet", "--no-cache"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("automl:")]
    assert err == ["automl: trial 0 failed: timed out after 0.5 s"]
    assert (
        main(
            ["run", "lines.toml", "--storage", "sqlite:///l.db", "--quiet", "--no-cache", "--trials", "1", "--verbose"]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "automl: trial 1 failed: timed out after 0.5 s" in err and "Traceback" in err and "TimedOut" in err
