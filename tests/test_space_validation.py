"""Every validation rule of the search-space format: one bad file per rule, checking the message."""

from __future__ import annotations

import textwrap

import pytest

from automl import SearchSpace, SpaceError
from automl.cli import main

GOOD = """
[study]
name = "v"
n_trials = 3
sampler = "random"

[task]
name = "digits"
batch_size = 8
image_size = 16

[[dimensions]]
name = "nb201"
channels = 4
cells_per_stage = 1

[evaluator]
name = "proxies"
proxies = ["synflow", "params"]

[[objectives]]
metric = "synflow"
direction = "maximize"
"""


def write(tmp_path, text: str, name: str = "space.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_for(tmp_path, text: str) -> SpaceError:
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_file(path)
    assert str(path) in str(info.value), "the message names the file"
    return info.value


def test_good_file_builds(tmp_path):
    space = SearchSpace.from_file(write(tmp_path, GOOD))
    assert space.study.name == "v"
    assert [k for k, _ in space.dimensions] == ["nb201"]
    assert space.metrics == ["synflow"]


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment", "allowed"),
    [
        ('name = "v"', 'name = "v"\ncolour = 3', "study.colour", "unknown key 'colour'", "n_trials"),
        ("n_trials = 3", "n_trials = 0", "study.n_trials", "below the minimum", None),
        ("n_trials = 3", 'n_trials = "many"', "study.n_trials", "expected an integer", None),
        ('sampler = "random"', 'sampler = "annealing"', "study.sampler", "'annealing' is not accepted", "tpe"),
        (
            'sampler = "random"',
            'sampler = "tpe"\nsampler_options = {warp = 3}',
            "study.sampler_options.warp",
            "unknown key 'warp': not an option of sampler 'tpe'",
            "n_startup_trials",
        ),
        (
            'sampler = "random"',
            'sampler = "random"\npruner_options = {n_startup_trials = 3}',
            "study.pruner_options",
            "without a pruner",
            None,
        ),
        ('name = "digits"', 'name = "mnist"', "task.name", "unknown task 'mnist'", "digits"),
        ("image_size = 16", "image_size = 4", "task.image_size", "below the minimum", None),
        ("channels = 4", "channels = 4\ndepth = 3", "dimensions[0].depth", "unknown key 'depth'", "cells_per_stage"),
        ("channels = 4", 'channels = "four"', "dimensions[0].channels", "expected an integer", None),
        (
            "channels = 4",
            "channels = 4\noperations = ['conv']",
            "dimensions[0].operations[0]",
            "'conv' is not accepted",
            "nor_conv_3x3",
        ),
        ("channels = 4", "channels = 4\noperations = []", "dimensions[0].operations", "at least 1", None),
        ('name = "nb201"', 'name = "resnet"', "dimensions[0].name", "unknown dimension 'resnet'", "nb201"),
        ('name = "proxies"', 'name = "oracle"', "evaluator.name", "unknown evaluator 'oracle'", "proxies"),
        (
            'proxies = ["synflow", "params"]',
            'proxies = ["synflow", "magic"]',
            "evaluator.proxies[1]",
            "unknown proxy 'magic'",
            "synflow",
        ),
        ('proxies = ["synflow", "params"]', "proxies = []", "evaluator.proxies", "at least 1", None),
        (
            'proxies = ["synflow", "params"]',
            'proxies = ["synflow", "synflow"]',
            "evaluator.proxies",
            "listed twice",
            None,
        ),
        ('metric = "synflow"', 'metric = "accuracy"', "objectives[0].metric", "'accuracy' is neither", "size_bits"),
        ('direction = "maximize"', 'direction = "up"', "objectives[0].direction", "'up' is not accepted", "minimize"),
    ],
)
def test_each_rule_names_key_and_allowed(tmp_path, old, new, key, fragment, allowed):
    assert old in GOOD
    err = error_for(tmp_path, GOOD.replace(old, new, 1))
    assert err.key == key
    assert fragment in str(err)
    if allowed is not None:
        assert err.allowed is not None and allowed in err.allowed


def test_missing_sections(tmp_path):
    no_task = GOOD.replace('[task]\nname = "digits"\nbatch_size = 8\nimage_size = 16\n', "")
    assert "missing section [task]" in str(error_for(tmp_path, no_task))
    no_dims = GOOD.replace('[[dimensions]]\nname = "nb201"\nchannels = 4\ncells_per_stage = 1\n', "")
    err = error_for(tmp_path, no_dims)
    assert err.key == "dimensions" and "nb201" in err.allowed
    no_objectives = GOOD.split("[[objectives]]")[0]
    err = error_for(tmp_path, no_objectives)
    assert err.key == "objectives" and "synflow" in err.allowed and "params" in err.allowed
    no_eval = GOOD.replace('[evaluator]\nname = "proxies"\nproxies = ["synflow", "params"]\n', "")
    assert "missing section [evaluator]" in str(error_for(tmp_path, no_eval))


def test_structure_errors(tmp_path):
    assert "unknown section 'extras'" in str(error_for(tmp_path, GOOD + "\n[extras]\nx = 1\n"))
    assert "not valid TOML" in str(error_for(tmp_path, GOOD + "\n[study\n"))
    text = GOOD.replace('[[dimensions]]\nname = "nb201"', '[dimensions]\nname = "nb201"')
    assert "array of tables" in str(error_for(tmp_path, text))
    text = GOOD.replace('name = "proxies"\n', "")
    err = error_for(tmp_path, text)
    assert err.key == "evaluator.name" and "missing key 'name'" in str(err)
    text = GOOD.replace('proxies = ["synflow", "params"]', "")
    err = error_for(tmp_path, text)
    assert err.key == "evaluator.proxies" and "missing required key" in str(err)


def test_dimension_keys(tmp_path):
    twice = GOOD.replace("[evaluator]", '[[dimensions]]\nname = "nb201"\n\n[evaluator]')
    err = error_for(tmp_path, twice)
    assert "share the key 'nb201'" in str(err)
    renamed = twice.replace(
        '[[dimensions]]\nname = "nb201"\n\n[evaluator]', '[[dimensions]]\nname = "nb201"\nkey = "second"\n\n[evaluator]'
    )
    assert "only one architecture dimension" in str(error_for(tmp_path, renamed))
    bad_key = GOOD.replace('name = "nb201"', 'name = "nb201"\nkey = "a b"')
    assert error_for(tmp_path, bad_key).key == "dimensions[0].key"


def test_single_objective_sampler_with_two_objectives(tmp_path):
    text = GOOD.replace('sampler = "random"', 'sampler = "cmaes"') + (
        '\n[[objectives]]\nmetric = "size_bits"\ndirection = "minimize"\n'
    )
    err = error_for(tmp_path, text)
    assert err.key == "study.sampler" and "one objective" in str(err)
    text = GOOD + '\n[[objectives]]\nmetric = "synflow"\ndirection = "minimize"\n'
    assert "listed twice" in str(error_for(tmp_path, text))


def test_missing_file_and_cli_exit_code(tmp_path, capsys):
    with pytest.raises(SpaceError, match="no such file"):
        SearchSpace.from_file(tmp_path / "absent.toml")
    path = write(tmp_path, GOOD.replace('name = "nb201"', 'name = "resnet"'))
    code = main(["run", str(path), "--storage", f"sqlite:///{tmp_path}/s.db"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, "one line, no traceback"
    assert f"{path}: dimensions[0].name: unknown dimension 'resnet' (allowed: " in err
    assert not (tmp_path / "s.db").exists(), "nothing is created for an invalid file"


def test_python_dict_names_the_space(nb201_space_dict):
    nb201_space_dict["task"]["batch_size"] = -1
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_dict(nb201_space_dict)
    assert str(info.value).startswith("<space>: task.batch_size:")
