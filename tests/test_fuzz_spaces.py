"""Fuzzing the search-space format: malformed files made from the shipped spaces, all in this one process.

Each case is validated (``SearchSpace.from_file``, everything ``automl run`` checks before a trial); a case
that is refused is run through ``automl run`` itself, which must print exactly one line and exit 2. No case
may raise anything but ``SpaceError`` (no traceback), warn, or take longer than its time limit.
"""

from __future__ import annotations

import copy
import random
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
from toml_writer import to_toml

from automl import SearchSpace, SpaceError
from automl.cli import main

SPACES = sorted((Path(__file__).parent.parent / "search_spaces").glob("*.toml"))
CASES = 300
CASE_SECONDS = 20
BAD_VALUES = [
    None,  # deleted
    "x",
    -5,
    0,
    10**18,
    -(10**18),
    1e300,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    [],
    ["x", 1],
    {},
    {"unknown": 1},
    "nonexistent",
]


def leaves(data: object, path: tuple = ()) -> Iterator[tuple]:
    """Every key path of a parsed file, tables and lists included."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*path, key)
            yield from leaves(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield (*path, i)
            yield from leaves(value, (*path, i))


def replaced(data: dict, path: tuple, value: object) -> dict:
    data = copy.deepcopy(data)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if value is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


def cases() -> list[tuple[str, bytes]]:
    """(label, file content) for CASES malformed files, the same on every run."""
    rng = random.Random(0)
    made: list[tuple[str, bytes]] = []
    for source in SPACES:
        text = source.read_text()
        data = tomllib.loads(text)
        for path in leaves(data):
            for value in BAD_VALUES:
                try:
                    content = to_toml(replaced(data, path, value)).encode()
                except TypeError:
                    continue
                made.append((f"{source.stem}:{'.'.join(map(str, path))}={value!r}", content))
        for key in ("study", "task", "evaluator", "objectives", "dimensions"):
            made.append((f"{source.stem}:unknown key in {key}", text.replace(f"[{key}]", f"[{key}]\nbogus_key = 1")))
        made.append((f"{source.stem}:unknown section", text + "\n[bogus]\nx = 1\n"))
        for _ in range(6):
            cut = rng.randrange(len(text))
            made.append((f"{source.stem}:truncated at {cut}", text[:cut].encode()))
        for _ in range(4):
            at = rng.randrange(len(text))
            made.append((f"{source.stem}:invalid UTF-8 at {at}", text[:at].encode() + b"\xff\xfe" + text[at:].encode()))
    made = [(label, content.encode() if isinstance(content, str) else content) for label, content in made]
    return rng.sample(made, min(CASES, len(made)))


class TookTooLong(Exception):
    pass


def _alarm(signum, frame):
    raise TookTooLong


@pytest.mark.slow
def test_malformed_space_files_get_one_line_and_exit_2(tmp_path, capfd):
    previous = signal.signal(signal.SIGALRM, _alarm)
    refused, accepted, failures = 0, 0, []
    try:
        for i, (label, content) in enumerate(cases()):
            path = tmp_path / f"case{i}.toml"
            path.write_bytes(content)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                signal.alarm(CASE_SECONDS)
                try:
                    SearchSpace.from_file(path)
                    accepted += 1
                    continue
                except SpaceError:
                    code = main(["run", str(path), "--trials", "1", "--storage", ":memory:", "--no-cache", "--quiet"])
                except TookTooLong:
                    failures.append(f"{label}: validation took over {CASE_SECONDS} s")
                    continue
                except Exception as err:  # noqa: BLE001 - what the test is looking for
                    failures.append(f"{label}: {type(err).__name__}: {err}")
                    continue
                finally:
                    signal.alarm(0)
            refused += 1
            _, err = capfd.readouterr()
            lines = err.splitlines()
            if code != 2 or len(lines) != 1 or not lines[0].startswith("automl: error: ") or caught:
                failures.append(f"{label}: exit {code}, stderr {err!r}, warnings {[str(w.message) for w in caught]}")
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert not failures, "\n".join(failures[:20])
    assert refused > CASES // 2, f"only {refused} of {CASES} cases were refused ({accepted} accepted)"
