"""The contract suites bite: broken plugins of every kind fail them, and the README's recipe runs as written."""

from __future__ import annotations

import math
import random
import re
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import automl
from automl import Architecture, ArchitectureDimension, EvalResult, Evaluator, Option, Proxy, ProxyValue, Strategy
from automl.testing import (
    ContractError,
    check_budget,
    check_fingerprint,
    check_json_round_trip,
    check_proxy_leaves_candidate_untouched,
    check_proxy_repeats,
    check_proxy_value,
    check_rebuilt_from_values,
    check_scores_declared,
    check_seeded_batches,
    check_string_round_trip,
    configured,
    dimension_space,
    evaluator_space,
    proxy_spaces,
    strategy_space,
)
from automl_plugins.tasks.digits import DigitsTask

README = Path(__file__).resolve().parents[1] / "README.md"


class ParamsLike(Proxy):
    name = "params_like"
    description = "a well-behaved proxy: the parameter count"
    applies_to = ("cell",)

    def score(self, candidate, batch):
        return float(sum(p.numel() for p in candidate.build_model().parameters()))


def cell_case():
    space = proxy_spaces(ParamsLike)["cell"]
    candidate = space.sample(automl_trial())
    return space, candidate, candidate.task.batch(seed=0)


def automl_trial():
    import optuna

    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()


def proxy(score, name="broken"):
    return type("Broken", (Proxy,), {"name": name, "description": "broken", "score": score}).configure({})


# -- proxies ---------------------------------------------------------------------------------------------
def test_a_well_behaved_proxy_passes_every_check():
    space, candidate, batch = cell_case()
    good = ParamsLike.configure({})
    assert check_proxy_value(good, candidate, batch) > 0
    check_proxy_repeats(good, space, candidate.params)
    check_proxy_leaves_candidate_untouched(good, candidate, batch)


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (math.inf, "finite"),
        (math.nan, "NaN without a reason"),
        (ProxyValue(math.nan, ""), "NaN without a reason"),
        (torch.tensor(1.0), "return a float"),
        (None, "return a float"),
    ],
)
def test_a_value_that_is_not_a_finite_float_or_nan_with_a_reason_fails(returned, message):
    _, candidate, batch = cell_case()
    with pytest.raises(ContractError, match=message):
        check_proxy_value(proxy(lambda self, c, b: returned), candidate, batch)
    check_proxy_value(proxy(lambda self, c, b: ProxyValue.nan("dead network")), candidate, batch)


def test_a_proxy_that_gives_another_value_per_call_fails():
    space, candidate, _ = cell_case()
    with pytest.raises(ContractError, match="same candidate, batch and seed"):
        check_proxy_repeats(proxy(lambda self, c, b: random.random()), space, candidate.params)
    # Torch's generator is seeded for the proxy: drawing from it repeats.
    check_proxy_repeats(proxy(lambda self, c, b: float(torch.rand(()))), space, candidate.params)


def _edit_reference(self, candidate, batch):
    with torch.no_grad():
        for parameter in candidate.reference_model.parameters():
            parameter.add_(1.0)
    return 1.0


def _zero_every_model(self, candidate, batch):
    candidate.add_transform("zero", lambda model, _: [p.data.zero_() for p in model.parameters()])
    return 1.0


def _reseed(self, candidate, batch):
    candidate.seed += 1
    return 1.0


def _scale_batch(self, candidate, batch):
    batch.inputs.mul_(2.0)
    return 1.0


def _record_value(self, candidate, batch):
    candidate.params["broken.value"] = 1
    return 1.0


@pytest.mark.parametrize(
    ("score", "message"),
    [
        (_edit_reference, "reference_model was modified"),
        (_zero_every_model, "other weights"),
        (_reseed, "other weights"),
        (_scale_batch, "batch's tensors were modified"),
        (_record_value, "its id went"),
    ],
)
def test_a_proxy_that_changes_what_it_scores_fails(score, message):
    _, candidate, batch = cell_case()
    with pytest.raises(ContractError, match=message):
        check_proxy_leaves_candidate_untouched(proxy(score), candidate, batch)


def test_required_options_without_an_example_ask_for_one():
    class NeedsScale(Proxy):
        name = "needs_scale"
        description = "has a required option"
        options = {"scale": Option(float)}

        def score(self, candidate, batch):
            return self.settings["scale"]

    with pytest.raises(ContractError, match=r"required options \(scale\).*declare `example = \{\.\.\.\}`"):
        configured(NeedsScale)
    NeedsScale.example = {"scale": 2.0}
    assert configured(NeedsScale).settings == {"scale": 2.0}
    with pytest.raises(ContractError, match="rejects the settings"):
        configured(NeedsScale, {"scale": "big"})


# -- the suites run by pytest ---------------------------------------------------------------------------
class Outcomes:
    """A pytest plugin that keeps each test's outcome."""

    def __init__(self):
        self.by_test: dict[str, str] = {}

    def pytest_runtest_logreport(self, report):
        name = report.nodeid.split("::", 1)[1]
        if report.when == "call" or report.outcome != "passed":
            self.by_test[name] = report.outcome


def run_pytest(path: Path, monkeypatch: pytest.MonkeyPatch) -> Outcomes:
    """Run pytest on ``path`` in this process, without the installed pytest plugins (the snapshot plugin's
    session state is global to the process)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    outcomes = Outcomes()
    pytest.main([str(path), "-q", "-p", "no:cacheprovider", "--rootdir", str(path.parent)], plugins=[outcomes])
    return outcomes


def test_broken_proxies_fail_the_suite_run_by_pytest(tmp_path, monkeypatch):
    (tmp_path / "test_broken_proxies.py").write_text(
        textwrap.dedent(
            """
            import random

            import torch

            from automl import Proxy
            from automl.testing import ProxyContract


            class NoisyProxy(Proxy):
                name = "noisy"
                description = "another value on every call"

                def score(self, candidate, batch):
                    return random.random()


            class WeightEditingProxy(Proxy):
                name = "weight_editing"
                description = "trains the candidate's own reference model"

                def score(self, candidate, batch):
                    with torch.no_grad():
                        for parameter in candidate.reference_model.parameters():
                            parameter.mul_(0.5)
                    return 1.0


            class TestNoisy(ProxyContract):
                proxy = NoisyProxy


            class TestWeightEditing(ProxyContract):
                proxy = WeightEditingProxy
            """
        )
    )
    outcomes = run_pytest(tmp_path / "test_broken_proxies.py", monkeypatch)
    failed = {name for name, outcome in outcomes.by_test.items() if outcome != "passed"}
    assert failed == {
        "TestNoisy::test_same_seed_gives_the_same_value",
        "TestWeightEditing::test_candidate_and_batch_are_left_untouched",
    }
    assert len(outcomes.by_test) == 10  # five checks per suite, the others passed


def _readme_block(first_line: str) -> str:
    section = README.read_text().split("## Writing a plugin", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return next(block for block in blocks if block.startswith(first_line))


def test_the_readme_plugin_passes_its_contract_run_as_the_readme_shows(tmp_path, monkeypatch):
    (tmp_path / "my_automl_plugin.py").write_text(_readme_block("# my_automl_plugin.py"))
    (tmp_path / "test_my_plugin.py").write_text(_readme_block("# test_my_plugin.py"))
    outcomes = run_pytest(tmp_path / "test_my_plugin.py", monkeypatch)
    assert outcomes.by_test and set(outcomes.by_test.values()) == {"passed"}, outcomes.by_test
    assert "TestConstantProxy::test_candidate_and_batch_are_left_untouched" in outcomes.by_test


# -- the other kinds ------------------------------------------------------------------------------------
class UnseededDigits(DigitsTask):
    name = "unseeded_digits"

    def batch(self, size=None, *, seed=0, split="train"):
        return super().batch(size, seed=random.randrange(1000), split=split)


class SeedlessDigits(DigitsTask):
    name = "seedless_digits"

    def batch(self, size=None, *, seed=0, split="train"):
        return super().batch(size, seed=0, split=split)


class InstanceDigits(DigitsTask):
    name = "instance_digits"

    def settings_key(self):
        return {**super().settings_key(), "instance": id(self)}


def test_tasks_with_unseeded_or_seed_blind_batches_or_an_instance_fingerprint_fail():
    def pair(cls):
        return configured(cls, DigitsTask.example), configured(cls, DigitsTask.example)

    check_seeded_batches(*pair(DigitsTask))
    check_fingerprint(*pair(DigitsTask))
    with pytest.raises(ContractError, match="twice from the same instance"):
        check_seeded_batches(*pair(UnseededDigits))
    with pytest.raises(ContractError, match="same tensors for seeds 0, 1, 2 and 3"):
        check_seeded_batches(*pair(SeedlessDigits))
    with pytest.raises(ContractError, match="two fresh instances have fingerprints"):
        check_fingerprint(*pair(InstanceDigits))


class RandomWidth(automl.Dimension):
    name = "random_width"
    description = "draws a width from Python's random instead of the trial"

    def suggest(self, trial, candidate):
        candidate.set_canonical(trial.prefix, random.randrange(10**9))


def test_a_dimension_that_decides_outside_the_trial_fails():
    with pytest.raises(ContractError, match="rebuilt from the stored values"):
        check_rebuilt_from_values(dimension_space(RandomWidth))


class LossyArchitecture(Architecture):
    kind = "cell"

    def __init__(self, width):
        self.width = width

    def to_string(self):
        return f"width={self.width}"

    def canonical_id(self):
        return str(self.width)

    def build(self, task, norm_layer=None, options=None):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(task.num_classes))


class LossyDimension(ArchitectureDimension):
    name = "lossy"
    description = "its parse drops the last digit"
    arch_kind = "cell"

    def sample(self, trial):
        return LossyArchitecture(trial.suggest_int("width", 10, 99))

    def parse(self, text):
        return LossyArchitecture(int(text.removeprefix("width=")[:1]))

    def params(self, arch):
        return {"width": arch.width}


def test_an_architecture_whose_string_form_does_not_round_trip_fails():
    space = dimension_space(LossyDimension)
    _, dim = space.architecture
    with pytest.raises(ContractError, match=r"parse\('width=\d\d'\)"):
        check_string_round_trip(dim, dim.sample(automl.ScopedTrial(automl_trial(), "lossy")))


class LoudEvaluator(Evaluator):
    name = "loud"
    description = "returns a score it does not declare, and a tuple in its info"

    def metrics(self):
        return ["declared"]

    def evaluate(self, candidate, context):
        return EvalResult(scores={"declared": 1.0, "undeclared": 2.0}, info={"shape": (1, 2)})


def test_an_evaluator_with_undeclared_scores_or_info_that_is_not_json_fails():
    space = evaluator_space(LoudEvaluator)
    result = space.evaluator.evaluate(None, None)
    with pytest.raises(ContractError, match=r"scores \['undeclared'\] that metrics\(\) does not declare"):
        check_scores_declared(space.evaluator, result)
    with pytest.raises(ContractError, match="info changes through JSON"):
        check_json_round_trip(space.evaluator, result)
    check_json_round_trip(space.evaluator, EvalResult(scores={"declared": math.nan}, reasons={"declared": "why"}))


class GreedyStrategy(Strategy):
    name = "greedy"
    description = "runs one trial more than it may"

    def run(self, runner, n_trials):
        for _ in range(n_trials + 1):
            runner.run_trial()


def test_a_strategy_that_overspends_its_run_fails(tmp_path):
    with pytest.raises(ContractError, match="recorded 3 new trials in a run of 2"):
        check_budget(strategy_space(GreedyStrategy), f"sqlite:///{tmp_path / 'greedy.db'}", 2)
