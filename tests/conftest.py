"""Shared fixtures: every test runs in its own folder with its own storage and score cache."""

from __future__ import annotations

import optuna
import pytest
import torch

from automl.registry import reset_registry

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    # The same for NumPy's BLAS (eigendecompositions in proxies): on a loaded machine its threads wait on each
    # other, and a 512 × 512 eigvalsh takes seconds instead of milliseconds.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(autouse=True)
def _one_thread():
    # The suite's networks are tiny: on a 2-core machine thread contention costs more than a second thread saves.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOML_CACHE", str(tmp_path / "cache.db"))
    monkeypatch.delenv("AUTOML_STORAGE", raising=False)
    monkeypatch.delenv("AUTOML_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    yield
    reset_registry()


@pytest.fixture
def storage(tmp_path):
    """A fresh SQLite study storage URL."""
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture
def nb201_space_dict():
    """A small NB201-on-digits space in the search-space file's shape (tiny networks for speed)."""
    return {
        "study": {"name": "t", "n_trials": 4, "seed": 0, "sampler": "random"},
        "task": {"name": "digits", "batch_size": 16, "image_size": 16},
        "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
        "evaluator": {"name": "proxies", "proxies": ["synflow", "params"]},
        "objectives": [{"metric": "synflow", "direction": "maximize"}],
    }
