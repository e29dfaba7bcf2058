"""PostgreSQL as the shared study storage: a private server, two workers on one study, the read commands."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from postgres_server import postgres_server, server_binaries
from test_workers import SPACE  # the shared-study space the worker tests use

from automl.errors import StorageError
from automl.storage import open_storage


@pytest.fixture(scope="module")
def server():
    if server_binaries() is None:
        pytest.skip("the PostgreSQL server (initdb, pg_ctl) is not installed: apt-get install postgresql")
    with postgres_server() as url:
        yield url


def fresh_database(server: str, name: str) -> str:
    engine = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    finally:
        engine.dispose()
    return server.replace("/postgres?", f"/{name}?")


def automl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "automl", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_processes_opening_a_fresh_database_together_all_get_the_storage(server):
    # Optuna creates its tables on first open; openers racing on a fresh database lose with
    # UniqueViolation "pg_type_typname_nsp_index" or DuplicateTable unless the loser opens again.
    for attempt in range(3):
        url = fresh_database(server, f"race{attempt}")
        barrier, errors = threading.Barrier(4), []

        def open_it(url=url, barrier=barrier, errors=errors):
            barrier.wait(30)
            try:
                open_storage(url)
            except Exception as err:  # noqa: BLE001 - collected for the assertion
                errors.append(f"{type(err).__name__}: {err}")

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert optuna.get_all_study_summaries(open_storage(url, read_only=True)) == []


@pytest.mark.slow
def test_two_workers_share_one_study_and_the_read_commands_read_it(server, tmp_path):
    (tmp_path / "space.toml").write_text(SPACE)
    url = fresh_database(server, "workers")
    # Started together on a database without tables: both create them at once.
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "automl", "run", "space.toml", "--storage", url, "--sampler-seed", str(seed)]
            + ["--quiet", "--no-cache"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    for worker in workers:
        _out, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=url)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) >= 8
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.user_attrs.get("failure") for t in trials]

    studies = automl("studies", "--storage", url)
    assert studies.returncode == 0, studies.stderr
    assert "shared" in studies.stdout
    shown = automl("show", "shared", "--storage", url)
    assert shown.returncode == 0, shown.stderr
    assert str(int(study.best_value)) in shown.stdout.replace(",", "")
    exported = automl("export", "shared", "--format", "csv", "--storage", url)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert sorted(int(r["number"]) for r in rows) == sorted(numbers)
    as_json = automl("export", "shared", "--format", "json", "--storage", url)
    assert as_json.returncode == 0, as_json.stderr
    assert len(json.loads(as_json.stdout)) == len(trials)


def test_a_missing_database_driver_is_one_line_naming_the_install():
    # pg8000 is not installed: SQLAlchemy fails importing it before any connection.
    url = "postgresql+pg8000://automl:secret@/postgres?host=/nonexistent"
    with pytest.raises(StorageError, match=r'pip install "pg8000"') as caught:
        open_storage(url)
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)
    run = automl("studies", "--storage", url)
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0 and 'pip install "pg8000"' in run.stderr
