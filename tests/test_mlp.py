"""The ``mlp`` architecture dimension: sampling, string form, parameters, building and what it refuses."""

from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn

from automl import SearchSpace, SpaceError
from automl_plugins.architectures.mlp import MLPArchitecture, MLPDimension, parse_arch
from automl_plugins.tasks import from_data


@pytest.fixture
def table():
    gen = torch.Generator().manual_seed(0)
    return from_data(torch.randn(60, 5, generator=gen), torch.arange(60) % 3)


def space_dict(task=None, **dimension):
    return {
        "study": {"name": "mlp", "n_trials": 3, "sampler": "random"},
        "task": task or {"name": "digits", "image_size": 8, "channels": 1},
        "dimensions": [{"name": "mlp", **dimension}],
        "evaluator": {"name": "training", "epochs": 1},
        "objectives": [{"metric": "val_accuracy"}],
    }


def test_string_form_parses_back_and_is_the_canonical_id():
    arch = MLPArchitecture([128, 64], "gelu")
    assert arch.to_string() == "128-64:gelu" == arch.canonical_id()
    assert parse_arch("128-64:gelu") == ((128, 64), "gelu")
    for bad, why in (
        ("128-64", "is not of the form"),
        ("0:relu", "at least one unit"),
        ("8:swish", "unknown activation"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_arch(bad)


def test_sampling_is_define_by_run_and_params_rebuild_the_same_architecture():
    dim = MLPDimension.configure({"depths": [1, 3], "widths": [4, 8], "activations": ["relu", "tanh"]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    from automl import ScopedTrial

    for _ in range(12):
        trial = study.ask()
        arch = dim.sample(ScopedTrial(trial, "mlp"))
        depth = trial.params["mlp.depth"]
        assert len(arch.widths) == depth and sum(k.startswith("mlp.w") for k in trial.params) == depth
        assert dim.params(arch) == {k.removeprefix("mlp."): v for k, v in trial.params.items()}
        assert dim.parse(arch.to_string()) == arch
        seen.add(depth)
    assert seen == {1, 3}
    with pytest.raises(ValueError, match="depth 2 is not in this space's depths"):
        dim.parse("8-8:relu")
    with pytest.raises(ValueError, match="width 16 is not in this space's widths"):
        dim.parse("16:relu")


def test_builds_for_tabular_and_image_tasks_with_a_norm_layer(table):
    model = MLPArchitecture([16, 8], "relu").build(table)
    assert model(table.batch(4).inputs).shape == (4, 3)
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 3
    space = SearchSpace.from_dict(
        {**space_dict(), "dimensions": [{"name": "mlp", "depths": [2]}, {"name": "normalization", "norms": ["batch"]}]}
    )
    candidate = space.candidate_from_arch("32-16:relu", {"normalization.norm": "batch"})
    model = candidate.build_model()
    assert model(space.task.batch(5).inputs).shape == (5, 10)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 2


def test_a_candidate_trains_and_its_id_follows_the_architecture():
    space = SearchSpace.from_dict(space_dict(widths=[8, 16]))
    one = space.candidate_from_arch("16-8:relu")
    assert one.id == space.candidate_from_arch("16-8:relu").id != space.candidate_from_arch("8-16:relu").id
    from automl import evaluate

    result = evaluate(one, {"name": "training", "epochs": 1})
    assert 0.0 <= result.scores["val_accuracy"] <= 1.0 and result.costs["params"] > 0


def test_options_and_task_kinds_are_checked():
    with pytest.raises(SpaceError, match=r"dimensions\[0\].widths: widths lists a value twice"):
        SearchSpace.from_dict(space_dict(widths=[8, 8]))
    with pytest.raises(SpaceError, match=r"dimensions\[0\].activations\[0\]: 'swish' is not accepted"):
        SearchSpace.from_dict(space_dict(activations=["swish"]))
    with pytest.raises(SpaceError, match="cannot take a text-classification task"):
        SearchSpace.from_dict(space_dict({"name": "text_order", "seq_len": 8}))
