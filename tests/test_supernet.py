"""The weight-sharing supernet: inherited weights, resume after a kill, reuse of the weight file."""

from __future__ import annotations

import optuna
import pytest
import torch

import automl
from automl.space import SearchSpace
from automl_plugins.architectures.nb201.supernet import inherit
from automl_plugins.evaluators.supernet import (
    SupernetSpec,
    candidate_quant,
    recalibrate_batchnorm,
    supernet_key,
    train_supernet,
    weights_folder,
)

SETTINGS = {"epochs": 2, "max_train_samples": 48, "calibration_batches": 1, "batch_size": 16}


def tiny_space(**evaluator) -> SearchSpace:
    """The smallest NB201 skeleton (one cell per stage, two channels) × two weight bit-widths per layer."""
    return SearchSpace.from_dict(
        {
            "study": {"name": "tiny", "seed": 0, "sampler": "random"},
            "task": {"name": "digits", "image_size": 8, "channels": 1, "batch_size": 16},
            "dimensions": [
                {"name": "nb201", "channels": 2, "cells_per_stage": 1},
                {"name": "quantization", "weight_bits": [2, 4], "activation_bits": [32], "per_layer": True},
            ],
            "evaluator": {"name": "supernet", **SETTINGS, **evaluator},
            "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
        }
    )


def candidates(space: SearchSpace, n: int, seed: int = 0) -> list:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.sample(study.ask()) for _ in range(n)]


def test_inherited_weights_match_the_supernet_path():
    space = tiny_space()
    spec = SupernetSpec(candidates(space, 1)[0])
    torch.manual_seed(0)
    supernet = spec.build(space.task)
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters
        for module in supernet.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    supernet.eval()
    x = torch.randn(5, 1, 8, 8)
    checked = set()
    for candidate in candidates(space, 12):
        model = candidate.build_model().eval()
        quant = candidate_quant(model)
        assert quant, "the candidate's weight layers are fake-quantized"
        inherit(model, supernet, candidate.architecture.ops)
        supernet.set_path(candidate.architecture.ops, quant)
        expected = supernet(x)
        assert torch.allclose(model(x), expected, atol=1e-6, rtol=0)
        checked |= {q[:1] for q in quant.values()} | {q[1:] for q in quant.values()}
    assert {(2,), (4,)} <= checked and len(checked) >= 4  # both bit-widths, several granularity × scheme


def test_inherit_refuses_a_model_of_another_shape():
    space = tiny_space()
    candidate = candidates(space, 1)[0]
    other = SearchSpace.from_dict({**space.raw, "dimensions": [{"name": "nb201", "channels": 3, "cells_per_stage": 1}]})
    supernet = SupernetSpec(candidate).build(space.task)
    with pytest.raises(RuntimeError):
        inherit(candidates(other, 1)[0].build_model(), supernet, candidate.architecture.ops)


def test_batchnorm_recalibration_is_the_plain_mean_over_the_batches():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.BatchNorm2d(3))
    data = automl.Batch(torch.randn(40, 1, 4, 4), torch.zeros(40, dtype=torch.long))
    used = recalibrate_batchnorm(model, data, batches=2, batch_size=8, seed=0)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = [model[0](data.inputs[order[i : i + 8]]) for i in (0, 8)]
    expected = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    assert used == 2
    assert torch.allclose(model[1].running_mean, expected, atol=1e-6)
    assert model[1].momentum == 0.1


class Stop(Exception):
    pass


def killed_after_epoch_two(space: SearchSpace, folder) -> tuple:
    """Train ``space``'s supernet into ``folder`` and stop it after epoch 2, as a kill would:
    (spec, settings, key, the keyword arguments of ``train_supernet`` besides the folder)."""
    candidate = candidates(space, 1)[0]
    settings = space.evaluator.settings
    spec = SupernetSpec(candidate)
    key = supernet_key(candidate, settings, 0)
    common = {"seed": 0, "device": torch.device("cpu"), "key": key}

    def stop_after_two(epoch: int) -> None:
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_supernet(spec, space.task, settings, folder=folder, on_epoch=stop_after_two, **common)
    return spec, settings, key, common


def test_a_killed_training_resumes_from_its_checkpoint(tmp_path):
    space = tiny_space(epochs=3, max_train_samples=32)
    spec, settings, key, common = killed_after_epoch_two(space, tmp_path / "killed")
    assert (tmp_path / "killed" / f"{key}.ckpt.pt").exists()
    assert not (tmp_path / "killed" / f"{key}.pt").exists()
    epochs_run = []
    resumed = train_supernet(
        spec, space.task, settings, folder=tmp_path / "killed", on_epoch=epochs_run.append, **common
    )
    assert epochs_run == [3]
    assert resumed["info"]["resumed_from_epoch"] == 3
    assert not (tmp_path / "killed" / f"{key}.ckpt.pt").exists()
    whole = train_supernet(spec, space.task, settings, folder=tmp_path / "whole", **common)
    for name, tensor in whole["state"].items():
        assert torch.equal(tensor, resumed["state"][name]), name


def test_a_second_evaluator_reuses_the_weight_file(tmp_path):
    space = tiny_space(weights_dir=str(tmp_path), epochs=1)
    first, second = candidates(space, 2)
    one = automl.evaluate(first, space.evaluator, seed=0, device="cpu")
    files = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt")
    assert files == [f"{one.info['supernet']}.pt"]
    stamp = (tmp_path / files[0]).stat().st_mtime_ns
    fresh = tiny_space(weights_dir=str(tmp_path), epochs=1).evaluator  # another process: nothing in memory
    again = automl.evaluate(first, fresh, seed=0, device="cpu")
    other = automl.evaluate(second, fresh, seed=0, device="cpu")
    assert (tmp_path / files[0]).stat().st_mtime_ns == stamp  # read, not trained and written again
    assert again.info["supernet_train_seconds"] == one.info["supernet_train_seconds"]
    assert again.scores == one.scores
    assert other.info["supernet"] == one.info["supernet"]
    # Another seed or other training settings are another supernet.
    assert supernet_key(first, space.evaluator.settings, 1) != one.info["supernet"]
    longer = tiny_space(weights_dir=str(tmp_path), epochs=2).evaluator
    assert supernet_key(first, longer.settings, 0) != one.info["supernet"]


def test_weights_live_beside_the_score_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOML_CACHE", str(tmp_path / "scores.db"))
    assert weights_folder({"weights_dir": None}) == tmp_path / "scores.db.supernets"


@pytest.mark.slow  # imports Ray for the strategy
def test_two_stage_screens_with_the_supernet(tmp_path):
    data = tiny_space(weights_dir=str(tmp_path / "weights"), epochs=1).raw
    data = {
        **data,
        "study": {**data["study"], "n_trials": 2},
        "evaluator": {"name": "training", "epochs": 1, "max_train_samples": 32},
        "strategy": {"name": "two_stage", "screen": {**data["evaluator"], "name": "supernet"}, "pool": 2, "top_k": 1},
    }
    from automl.runner import StudyRunner

    runner = StudyRunner(SearchSpace.from_dict(data), storage=f"sqlite:///{tmp_path / 's.db'}", cache=False)
    runner.run()  # a budget of two trials: both screen, none is left to train
    trials = runner.study.get_trials()
    assert [t.user_attrs.get("stage") for t in trials] == ["screen", "screen"]
    assert all(t.user_attrs["screen"]["metric"] == "val_accuracy" for t in trials)
    assert len([p for p in (tmp_path / "weights").iterdir() if p.suffix == ".pt"]) == 1
