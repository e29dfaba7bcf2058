"""Worker heartbeats: a trial whose process died is found and failed instead of staying RUNNING forever.

Optuna's own heartbeat exists only for RDB storages and cannot store why a trial failed, so automl keeps
its own, on every storage: while a trial runs, a background thread writes the user attribute
``automl.worker`` = ``{"host", "pid", "beat"}`` every ``interval`` seconds. A run that opens the study
(a resumed run, or a worker beside it) fails, with the reason ``worker died``, every RUNNING trial whose
worker is gone:

- the worker ran on this host and its process no longer exists (known at once), or
- its last beat is older than ``grace`` seconds (a worker on another host, or one that froze).

A RUNNING trial from before heartbeats existed counts as beating at its start time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from optuna.trial import TrialState

if TYPE_CHECKING:
    import optuna

WORKER_ATTR = "automl.worker"
DEAD_REASON = "worker died"
INTERVAL = 10.0
GRACE = 60.0
HOST = socket.gethostname()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _beat(trial: optuna.Trial) -> None:
    trial.set_user_attr(WORKER_ATTR, {"host": HOST, "pid": os.getpid(), "beat": time.time()})


@contextmanager
def heartbeat(trial: optuna.Trial, interval: float = INTERVAL) -> Iterator[None]:
    """Beat for ``trial`` while the block runs (a first beat at once)."""
    _beat(trial)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            # The trial may have ended or the storage be busy for a moment: beat again later.
            with contextlib.suppress(Exception):
                _beat(trial)

    thread = threading.Thread(target=loop, name=f"automl-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def is_dead(trial: optuna.trial.FrozenTrial, *, grace: float = GRACE, now: float | None = None) -> bool:
    """Whether a RUNNING trial's worker is gone (see the module's rules)."""
    if trial.state != TrialState.RUNNING:
        return False
    now = time.time() if now is None else now
    worker = trial.user_attrs.get(WORKER_ATTR)
    if not isinstance(worker, dict):
        start = trial.datetime_start
        return start is not None and now - start.timestamp() > grace
    pid = worker.get("pid")
    if worker.get("host") == HOST and isinstance(pid, int) and pid != os.getpid() and not _alive(pid):
        return True
    return now - float(worker.get("beat", 0.0)) > grace


def fail_dead_trials(
    study: optuna.Study, storage: optuna.storages.BaseStorage, *, grace: float = GRACE, retry: bool = False
) -> list[int]:
    """Fail every RUNNING trial of ``study`` (opened from ``storage``) whose worker died; return their numbers.

    ``retry`` enqueues each such candidate once more (a trial that was itself a retry is not retried).
    """
    from optuna.exceptions import UpdateFinishedTrialError

    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_dead(trial, grace=grace):
            continue
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_user_attr(trial_id, "failure", DEAD_REASON)
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, RuntimeError, ValueError):
            continue  # another process finished or failed it first
        failed.append(trial.number)
        if retry and "retry_of" not in trial.user_attrs and trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
    return failed
