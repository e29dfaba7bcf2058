"""Command-line conventions: python -m automl, --version/--help without plugins, closed pipes, --json, exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest

import automl
from automl.cli import main

FAST_TRAINING = {"name": "training", "epochs": 2, "max_train_samples": 64, "batch_size": 32}


def python_m_automl(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "automl", *args], capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def test_python_m_automl_is_the_automl_command():
    version = python_m_automl("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"automl {automl.__version__}"
    assert python_m_automl("studies", "--storage", "missing.db").returncode == 1


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_load_neither_plugins_nor_optuna(flag):
    probe = (
        "import sys\nfrom automl.cli import main\n"
        f"try:\n    main([{flag!r}])\nexcept SystemExit as done:\n    code = done.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('automl_plugins', 'optuna', 'torch'))\n"
        "print('LOADED', code, loaded)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "LOADED 0 []"
    if flag == "--help":
        for command in ("run", "studies", "show", "export", "plugins"):
            assert f"    {command} " in run.stdout
        assert "`automl plugins` lists them" in run.stdout


@pytest.mark.slow
def test_a_plugin_command_still_parses():
    run = python_m_automl("score", "--help")
    assert run.returncode == 0, run.stderr
    assert "usage: automl score" in run.stdout


@pytest.fixture
def big_study(tmp_path):
    """A plain Optuna study whose export is far larger than a pipe's buffer (64 KiB)."""
    storage = f"sqlite:///{tmp_path / 'big.db'}"
    study = optuna.create_study(study_name="big", storage=storage)
    long = "x" * 4000
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"choice": long + str(i % 3)},
                distributions={
                    "choice": optuna.distributions.CategoricalDistribution([long + "0", long + "1", long + "2"])
                },
                value=float(i),
            )
            for i in range(60)
        ]
    )
    return storage


@pytest.mark.slow
def test_a_closed_pipe_ends_the_command_quietly_with_141(big_study, tmp_path):
    # A real shell pipe: head reads one line and exits while automl is still writing.
    for command in (f"export big --storage {big_study}", f"studies --storage {big_study}"):
        shell = f"{sys.executable} -m automl {command} 2>{tmp_path}/err | head -1; echo status=${{PIPESTATUS[0]}}"
        run = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120, check=False)
        first, status = run.stdout.splitlines()[0], run.stdout.splitlines()[-1]
        err = (tmp_path / "err").read_text()
        assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
        if command.startswith("export"):
            assert first.startswith("number,state,value.0")
            assert status == "status=141"  # 240 KB cannot fit in the pipe: the write fails
        else:
            assert first.startswith("study")
            assert status in ("status=0", "status=141")  # a short table may fit in the pipe before head exits
    # A reader that is gone before the first write: always the closed-pipe path.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "automl", "studies", "--storage", big_study],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert run.returncode == 141
    assert run.stderr == ""


@pytest.fixture
def trained_study(nb201_space_dict, storage):
    space = {**nb201_space_dict, "evaluator": FAST_TRAINING}
    space["objectives"] = [{"metric": "val_accuracy", "direction": "maximize"}]
    space["study"] = {**space["study"], "n_trials": 2}
    automl.search(space, storage=storage, cache=False)
    return storage


@pytest.mark.slow
def test_export_json_is_an_array_and_jsonl_a_record_per_line_with_curves_and_times(trained_study, capsys):
    assert main(["export", "t", "--storage", trained_study, "--format", "json"]) == 0
    array = json.loads(capsys.readouterr().out)
    assert main(["export", "t", "--storage", trained_study, "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert array == lines and len(array) == 2
    study = optuna.load_study(study_name="t", storage=trained_study)
    for record, trial in zip(array, study.trials):
        curve = json.loads(record["info.curve"])
        assert curve == [trial.intermediate_values[s] for s in sorted(trial.intermediate_values)]
        assert len(curve) == FAST_TRAINING["epochs"]
        assert record["completed"] == trial.datetime_complete.isoformat(timespec="seconds")
        for name in ("cost.params", "cost.flops", "cost.size_bits"):
            assert type(record[name]) is int and record[name] > 0, name
    assert main(["export", "t", "--storage", trained_study, "--format", "csv"]) == 0
    csv_text = capsys.readouterr().out
    assert ',"[' in csv_text  # the curve's JSON list, quoted as one cell
    assert f",{array[0]['cost.params']}," in csv_text  # no ".0"


def test_json_output_of_studies_show_and_plugins(nb201_space_dict, storage, capsys):
    automl.search(nb201_space_dict, storage=storage)
    assert main(["studies", "--storage", storage, "--json"]) == 0
    studies = json.loads(capsys.readouterr().out)
    assert [s["study"] for s in studies] == ["t"]
    assert studies[0]["counts"]["COMPLETE"] == 4 and studies[0]["directions"] == ["maximize"]
    assert main(["show", "t", "--storage", storage, "--json", "--top", "2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    best = optuna.load_study(study_name="t", storage=storage).best_trial
    assert shown["metrics"] == ["synflow"] and shown["counts"]["COMPLETE"] == 4
    assert shown["best"][0]["number"] == best.number and shown["best"][0]["value.synflow"] == best.value
    assert len(shown["best"]) == 2
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    proxies = {m["name"]: m for p in listing["plugins"] for m in p["registered"].get("proxies", [])}
    assert "synflow" in proxies and listing["failures"] == []
    commands = {m["name"] for p in listing["plugins"] for m in p["registered"].get("commands", [])}
    assert {"score", "tui"} <= commands
