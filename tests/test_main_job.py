"""The README's main job: the bundled NB201-on-digits search file, run, continued and read back."""

from __future__ import annotations

import json
from pathlib import Path

from automl import SearchSpace
from automl.cli import main

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "nb201_digits.toml"


def test_main_job_runs_continues_and_reads_back(storage, capsys):
    assert main(["run", str(SPACE), "--trials", "2", "--storage", storage, "--quiet"]) == 0
    out = capsys.readouterr()
    assert "study 'nb201-digits': 2 complete" in out.out
    assert "best 2 distinct candidates by synflow (maximize)" in out.out
    assert "|+|" in out.out, "prints the best cells in NAS-Bench-201 form"

    assert main(["run", str(SPACE), "--trials", "1", "--storage", storage, "--quiet"]) == 0
    out = capsys.readouterr()
    assert "continuing study 'nb201-digits' (2 trials finished)" in out.err
    assert "3 complete" in out.out

    assert main(["export", "nb201-digits", "--storage", storage, "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["number"] for r in rows] == [0, 1, 2]
    assert all(r["score.synflow"] > 0 and r["cost.params"] > 0 for r in rows)


def test_every_bundled_space_file_validates(monkeypatch, tmp_path):
    from automl_plugins.tasks.examples import digits_png

    files = sorted(SPACE.parent.glob("*.toml"))
    assert SPACE in files
    # The data examples name their files relative to the repository root, where they are run from; the
    # image folder is written by search_spaces/make_example_data.py (here into a copy of the layout).
    root = SPACE.parent.parent
    work = tmp_path / "repo"
    (work / "search_spaces").mkdir(parents=True)
    (work / "search_spaces" / "data").symlink_to(root / "search_spaces" / "data")
    monkeypatch.chdir(work)
    if not (root / "search_spaces" / "data" / "digits_png").exists():
        (work / "search_spaces" / "data").unlink()
        (work / "search_spaces" / "data").mkdir()
        for shipped in (root / "search_spaces" / "data").iterdir():
            (work / "search_spaces" / "data" / shipped.name).symlink_to(shipped)
        digits_png(work / "search_spaces" / "data" / "digits_png", per_class=4)
    for path in files:
        SearchSpace.from_file(path)
