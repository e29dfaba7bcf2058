"""Every option has a sane range, nested sampler and pruner tables are checked, and sizes are refused up front."""

from __future__ import annotations

import copy
import sys

import pytest
from toml_writer import to_toml

from automl import SearchSpace, SpaceError
from automl.cli import main
from automl.options import Option
from automl.space import max_model_params

BASE = {
    "study": {"name": "v", "n_trials": 3, "sampler": "random"},
    "task": {"name": "digits", "batch_size": 8, "image_size": 16},
    "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
    "evaluator": {"name": "proxies", "proxies": ["synflow", "params"]},
    "objectives": [{"metric": "synflow", "direction": "maximize"}],
}
TRAINING = {"name": "training", "epochs": 1}
ORACLE = {"name": "table", "benchmark": "nb201"}
ROBOT = {"name": "robot", "proxies": ["synflow"], "budget": 3, "oracle": ORACLE}


def space(**changes) -> dict:
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split("__")
        table = data
        for part in parents:
            table = table[int(part)] if part.isdigit() else table.setdefault(part, {})
        table[last] = value
    return data


def rejected(data: dict, tmp_path, capsys) -> str:
    """Run ``data`` through the CLI: one line on stderr, exit 2, no storage created; the line is returned."""
    path = tmp_path / "space.toml"
    path.write_text(to_toml(data))
    code = main(["run", str(path), "--trials", "1", "--storage", "sqlite:///s.db", "--no-cache", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "s.db").exists(), "nothing ran"
    return err


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        # Hangs or giant allocations before.
        (
            {"dimensions__0__cells_per_stage": 1_000_000_000},
            "dimensions[0].cells_per_stage: 1000000000 is above the maximum 64",
        ),
        ({"dimensions__0__channels": 1_000_000_000}, "dimensions[0].channels: 1000000000 is above the maximum 1024"),
        ({"dimensions__0__channels": 1e9}, "dimensions[0].channels: expected an integer"),
        (
            {"evaluator": {**TRAINING, "epochs": 1_000_000_000}},
            "evaluator.epochs: 1000000000 is above the maximum 10_000",
        ),
        (
            {"strategy": {**ROBOT, "pool_size": 1_000_000_000}},
            "strategy.pool_size: 1000000000 is above the maximum 100_000",
        ),
        # Accepted, then failing every trial, before.
        ({"dimensions": []}, "dimensions: missing section [[dimensions]]"),
        ({"evaluator": {**TRAINING, "lr": float("inf")}}, "evaluator.lr: inf is not a finite number"),
        ({"evaluator": {**TRAINING, "lr": 0}}, "evaluator.lr: 0.0 must be above 0.0"),
        ({"evaluator": {**TRAINING, "lr": float("nan")}}, "evaluator.lr: NaN is not a valid number"),
        (
            {"strategy": {"name": "evolution", "budget": 3, "oracle": ORACLE, "population_size": 10**18}},
            "strategy.population_size",
        ),
        (
            {"strategy": {"name": "evolution", "budget": 3, "oracle": ORACLE, "population_size": 1e30}},
            "expected an integer",
        ),
        (
            {"strategy": {"name": "random", "budget": 3, "oracle": ORACLE, "seed": -1}},
            "strategy.seed: -1 is below the minimum 0",
        ),
        ({"study__seed": -1}, "study.seed: -1 is below the minimum 0"),
        ({"study__seed": 2**40}, "is above the maximum 4_294_967_295"),
        ({"study__n_trials": 10**12}, "study.n_trials"),
    ],
)
def test_out_of_range_options_are_refused_with_the_limit(tmp_path, capsys, changes, fragment):
    assert fragment in rejected(space(**changes), tmp_path, capsys)


def test_a_text_task_with_a_giant_batch_is_refused(tmp_path, capsys):
    data = {
        "study": {"name": "t", "n_trials": 2},
        "task": {"name": "text_lm", "batch_size": 1_000_000_000},
        "dimensions": [{"name": "nlp_rnn"}],
        "evaluator": {"name": "proxies", "proxies": ["params"]},
        "objectives": [{"metric": "params"}],
    }
    assert "task.batch_size: 1000000000 is above the maximum 4096" in rejected(data, tmp_path, capsys)


def test_a_model_too_large_for_the_machine_is_refused_from_its_parameter_count(tmp_path, capsys):
    err = rejected(space(dimensions__0__channels=1024, dimensions__0__cells_per_stage=4), tmp_path, capsys)
    assert "dimensions[0]: a candidate of this space has" in err
    assert f"{max_model_params():,} allowed" in err
    # The same network at a sane size is accepted.
    SearchSpace.from_dict(space(dimensions__0__channels=16, dimensions__0__cells_per_stage=5))


# -- nested sampler and pruner tables ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("study", "fragment"),
    [
        (
            {"sampler": "tpe", "sampler_options": {"n_startup_trials": "x"}},
            "study.sampler_options.n_startup_trials: expected an integer, got 'x'",
        ),
        (
            {"sampler": "tpe", "sampler_options": {"n_startup_trials": -5}},
            "study.sampler_options.n_startup_trials: -5 is below the minimum 0",
        ),
        (
            {"sampler": "tpe", "sampler_options": {"n_startup": 5}},
            "unknown key 'n_startup': not an option of sampler 'tpe' (allowed: consider_endpoints",
        ),
        ({"sampler": "tpe", "sampler_options": {"gamma": 0.1}}, "unknown key 'gamma'"),
        ({"sampler": "random", "sampler_options": {"n_startup_trials": 5}}, "(allowed: none)"),
        ({"sampler": "nsga2", "sampler_options": {"mutation_prob": 1.5}}, "mutation_prob: 1.5 is above the maximum 1"),
        (
            {"sampler": "nsga2", "sampler_options": {"population_size": float("inf")}},
            "population_size: expected an integer",
        ),
        (
            {"sampler": "qmc", "sampler_options": {"qmc_type": "lhs"}},
            "qmc_type: 'lhs' is not accepted (allowed: sobol, halton)",
        ),
        (
            {"pruner": "patient", "pruner_options": {"wrapped": "medain", "patience": 2}},
            "study.pruner_options.wrapped: 'medain' is not accepted (allowed: median, percentile",
        ),
        ({"pruner": "patient", "pruner_options": {"wrapped": "median"}}, "missing required key 'patience'"),
        (
            {
                "pruner": "patient",
                "pruner_options": {"patience": 2, "wrapped": "median", "wrapped_options": {"n_warmup_steps": -1}},
            },
            "study.pruner_options.wrapped_options.n_warmup_steps: -1 is below the minimum 0",
        ),
        (
            {"pruner": "hyperband", "pruner_options": {"min_resource": 0}},
            "study.pruner_options.min_resource: 0 is below the minimum 1",
        ),
        (
            {"pruner": "successive_halving", "pruner_options": {"min_resource": "some"}},
            "'some' is not accepted (allowed: auto)",
        ),
        ({"pruner": "percentile", "pruner_options": {"percentile": 101}}, "percentile: 101.0 is above the maximum 100"),
        ({"pruner": "median", "pruner_options": {"n_startup_trials": True}}, "expected an integer, got true"),
        ({"pruner": "threshold", "pruner_options": {"lower": float("-inf")}}, "lower: -inf is not a finite number"),
    ],
)
def test_sampler_and_pruner_options_are_checked_like_the_top_level(tmp_path, capsys, study, fragment):
    assert fragment in rejected(space(**{f"study__{k}": v for k, v in study.items()}), tmp_path, capsys)


def test_good_nested_options_build_the_sampler_and_pruner():
    built = SearchSpace.from_dict(
        space(
            study__sampler="tpe",
            study__sampler_options={"n_startup_trials": 3, "multivariate": True, "n_ei_candidates": 12},
            study__pruner="patient",
            study__pruner_options={"patience": 2, "wrapped": "median", "wrapped_options": {"n_startup_trials": 1}},
        )
    )
    sampler, pruner = built.make_sampler(), built.make_pruner()
    assert sampler._n_startup_trials == 3
    assert type(pruner._wrapped_pruner).__name__ == "MedianPruner"


def test_cmaes_without_its_package_is_refused_with_the_install_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cmaes", None)  # how Python marks a module that cannot be imported
    err = rejected(space(study__sampler="cmaes"), tmp_path, capsys)
    assert "study.sampler: sampler 'cmaes' needs the 'cmaes' package" in err and "pip install cmaes" in err


def test_bruteforce_over_a_continuous_range_is_refused_before_any_trial(tmp_path, capsys):
    loss = {"name": "loss", "losses": ["cross_entropy", "mae", "label_smoothing"]}
    data = space(study__sampler="bruteforce")
    data["dimensions"].append(loss)
    err = rejected(data, tmp_path, capsys)
    assert "study.sampler: sampler 'bruteforce' enumerates every candidate, but 'loss.smoothing'" in err
    # Only discrete values: accepted.
    data["dimensions"][1]["losses"] = ["cross_entropy", "mae"]
    SearchSpace.from_dict(data)


# -- files and paths --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'[study]\nname = "\xff\xfe"\n', "not UTF-8 text (byte 0xff at offset 16)"),
        (bytes(range(256)) * 4, "not UTF-8 text"),
        (b"\x00" * 100, "not valid TOML"),
        (b"[" * 200_000, "not valid TOML"),
        (b"a = " + b"[" * 200_000, "not valid TOML"),
        (b"#" * (2**20 + 1), "larger than 1 MiB"),
    ],
    ids=["invalid-utf8", "binary", "nul-bytes", "deep-tables", "deep-arrays", "huge"],
)
def test_a_space_file_that_is_not_toml_text_is_one_line(tmp_path, capsys, content, fragment):
    path = tmp_path / "space.toml"
    path.write_bytes(content)
    assert main(["run", str(path), "--storage", "sqlite:///s.db"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and str(path) in err, err


@pytest.mark.parametrize(("name", "fragment"), [("/dev/zero", "larger than 1 MiB"), (".", "is a directory")])
def test_a_device_or_a_folder_as_the_space_file_is_one_line(capsys, name, fragment):
    assert main(["run", name, "--storage", "sqlite:///s.db"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"arch,acc\n\xff\xfe,1\n", "is not UTF-8 text (byte 0xff at offset 9)"),
        (b"\x00\x01\x02binary", "is a binary file"),
        (None, "is a folder, not a file"),
    ],
)
def test_a_table_path_must_be_a_text_file(tmp_path, capsys, content, fragment):
    table = tmp_path / "t.csv"
    if content is None:
        table.mkdir()
    else:
        table.write_bytes(content)
    err = rejected(space(evaluator={"name": "table", "path": "t.csv"}), tmp_path, capsys)
    assert "evaluator.path" in err and fragment in err


def test_path_options_check_what_they_name(tmp_path):
    folder = Option(str, path="folder")
    folder.check(str(tmp_path / "new" / "deeper"), "folder")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpaceError, match="is not a folder"):
        folder.check(str(tmp_path / "file"), "folder")
    with pytest.raises(SpaceError, match="no such file"):
        Option(str, path="file").check(str(tmp_path / "missing"), "path")
    with pytest.raises(ValueError, match="must be one of"):
        Option(str, path="somewhere")


def test_a_ray_folder_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "runs").write_text("x")
    data = space(strategy={"name": "ray_tune", "folder": "runs"})
    assert "strategy.folder: 'runs' is not a folder" in rejected(data, tmp_path, capsys)


def test_every_declared_number_has_an_upper_bound():
    from automl.registry import get_registry

    registry = get_registry()
    unbounded = []
    for kind in ("tasks", "dimensions", "evaluators", "strategies", "proxies"):
        for name in registry.names(kind):
            for option_name, option in getattr(registry.get(kind, name), "options", {}).items():
                numeric = option.type in (int, float) or option.item_type in (int, float)
                if numeric and option.choices is None and option.max is None:
                    unbounded.append(f"{kind}.{name}.{option_name}")
    from automl.pruners import MO_ASHA_OPTIONS

    for option_name, option in MO_ASHA_OPTIONS.items():
        if (option.type in (int, float) or option.item_type in (int, float)) and option.max is None:
            unbounded.append(f"pruner.mo_asha.{option_name}")
    assert unbounded == []
