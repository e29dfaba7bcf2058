"""The study runner: creates or resumes an Optuna study and evaluates one candidate per trial."""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.cache import ScoreCache
from automl.errors import AutomlError, Interrupted, TrialFailed, UsageError
from automl.evaluation import Evaluations, candidate_costs
from automl.evaluators import EvalContext, EvalResult, Evaluator
from automl.heartbeat import fail_dead_trials, heartbeat
from automl.pruners import needs_costs
from automl.record import (
    TrialRecord,
    failure_record,
    pruned_record,
    record_candidate,
    record_costs,
    record_outcome,
)
from automl.registry import get_registry
from automl.space import SearchSpace
from automl.storage import open_storage

if TYPE_CHECKING:
    from automl.candidate import Candidate

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
SPACE_ATTR = "automl.space"
RAW_ATTR = "automl.raw"

logger = logging.getLogger("automl")


def failure_reason(err: BaseException) -> str:
    """What a failed trial's record says for an exception (a ``TrialFailed`` message as it is)."""
    if isinstance(err, TrialFailed):
        return str(err)
    if isinstance(err, Interrupted):
        return f"interrupted ({err.signal_name})"
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    if isinstance(err, SystemExit):
        return f"interrupted: the evaluation called sys.exit({err.code!r})"
    return f"{type(err).__name__}: {err}"


class StudyRunner:
    """Runs a search space against one Optuna study; the ``SearchContext`` strategies receive.

    Every trial carries a ``TrialRecord`` (see ``automl.record``). ``options`` are settings the
    command line passes to strategies (``ray_address``). Opening the study fails the RUNNING trials of
    workers that died (``automl.heartbeat``); ``retry_dead`` evaluates each of their candidates once more.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        storage: str | optuna.storages.BaseStorage | None = None,
        study_name: str | None = None,
        seed: int | None = None,
        cache: ScoreCache | str | bool | None = True,
        device: str | None = None,
        sampler_seed: int | None = None,
        options: Mapping[str, Any] | None = None,
        retry_dead: bool = False,
    ) -> None:
        self.space = space
        check_device(device)
        self.seed = space.study.seed if seed is None else seed
        # Several processes sharing one study need different sampler seeds but the same evaluation seed.
        self.sampler_seed = self.seed if sampler_seed is None else sampler_seed
        self.device = device
        self.options: Mapping[str, Any] = dict(options or {})
        if cache is True or cache is None:
            cache = ScoreCache()
        elif isinstance(cache, str):
            cache = ScoreCache(cache)
        self.cache: ScoreCache | None = None if cache is False else cache
        self.evaluations = Evaluations(
            space.task, seed=self.seed, cache=self.cache, threads=self.options.get("threads")
        )
        self.storage = open_storage(storage)
        self.study_name = study_name or space.study.name
        self.study = self._open_study()
        self.dead_trials = fail_dead_trials(self.study, self.storage, retry=retry_dead)
        self._progress: _Progress | None = None

    def _open_study(self) -> optuna.Study:
        try:
            study = optuna.create_study(
                storage=self.storage,
                study_name=self.study_name,
                sampler=self.space.make_sampler(self.sampler_seed),
                pruner=self.space.make_pruner(),
                directions=self.space.directions,
                load_if_exists=True,
            )
        except optuna.exceptions.OptunaError as err:
            raise AutomlError(f"study {self.study_name!r}: {err}") from None
        existing = [d.name.lower() for d in study.directions]
        if existing != self.space.directions:
            raise AutomlError(
                f"study {self.study_name!r} already exists with directions {existing}, but the space "
                f"asks for {self.space.directions}; choose another --study name"
            )
        trials = study.get_trials(deepcopy=False)
        stored = study.user_attrs.get(RAW_ATTR)
        if trials and isinstance(stored, Mapping) and "dimensions" in stored:
            changed = _first_difference(stored.get("dimensions"), self.space.raw.get("dimensions"), "dimensions")
            if changed is not None:
                raise UsageError(
                    f"study {self.study_name!r} already has {len(trials)} trials searched with other dimensions "
                    f"({changed} changed); Optuna cannot continue it with a different space: choose another "
                    f"--study name, or restore the file"
                )
        if trials:
            # A resumed run must not replay the sampler's sequence from the start (a seeded random sampler
            # would propose the same candidates again): its seed moves on with the trials already made.
            study.sampler = self.space.make_sampler(self.sampler_seed + 1_000_003 * len(trials))
        if study.metric_names != self.space.metrics:
            # Optuna's plots, trials_dataframe() and optuna-dashboard name the objectives by these.
            with warnings.catch_warnings():
                # Optuna marks it experimental; naming the objectives is automl's choice, not the user's.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(self.space.metrics))
        described = self.space.describe()
        if study.user_attrs.get(SPACE_ATTR) != described:
            study.set_user_attr(SPACE_ATTR, described)
            study.set_user_attr(RAW_ATTR, self.space.raw)
        return study

    # -- running -----------------------------------------------------------------------------------
    def finished_trials(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def remaining(self) -> int:
        """Trials left in the space's total budget."""
        return max(0, self.space.study.n_trials - self.finished_trials())

    def run(
        self, n_trials: int | None = None, *, show_progress: bool = False, timeout: float | None = None
    ) -> optuna.Study:
        """Run ``n_trials`` more trials, or what is left of the space's budget when ``None``."""
        budget = self.remaining() if n_trials is None else n_trials
        if budget <= 0:
            return self.study
        progress = self._progress = _Progress(self, budget) if show_progress else None
        try:
            if self.space.strategy is not None:
                self.space.strategy.run(self, budget)
            else:
                deadline = None if timeout is None else time.monotonic() + timeout
                for _ in range(budget):
                    # Other processes may share the study: the total budget is checked before each trial.
                    if n_trials is None and self.remaining() <= 0:
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    self.run_trial()
        finally:
            if progress:
                progress.close()
            self._progress = None
        return self.study

    def run_trial(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        evaluator: Evaluator | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> FrozenTrial:
        """Sample (or fix), evaluate and record one candidate as a trial; return the stored trial.

        ``params`` fixes the candidate (prefixed parameter names, as ``SearchSpace.candidate`` takes);
        ``evaluator`` replaces the space's (a strategy's oracle); ``attrs`` are extra user attributes.
        An exception fails the trial with its reason and the search goes on; an interruption
        (Ctrl-C, ``sys.exit`` in a plugin) fails the trial as interrupted and is raised again.
        """
        if params:
            # An enqueued trial is the public way to fix a candidate: the next ask() pops it and every
            # dimension's suggest returns exactly these values.
            self.study.enqueue_trial(dict(params), skip_if_exists=False)
        trial = self.study.ask()
        start = time.perf_counter()
        evaluator = evaluator or self.space.evaluator
        context = EvalContext(trial, seed=self.seed, device=self.device, space=self.space)
        candidate: Candidate | None = None
        state, values, interrupted = TrialState.FAIL, None, None
        try:
            for key, value in (attrs or {}).items():
                trial.set_user_attr(key, value)
            candidate = self.space.sample(trial)
            candidate.seed = self.seed
            record_candidate(trial, candidate)
            if needs_costs(self.study.pruner):
                # Known before training: the pruner judges the trial's curve together with them.
                record_costs(trial, candidate_costs(candidate))
            # The space's limits bound its own evaluator (a strategy's oracle runs as it is).
            limits = self.space.limits if evaluator is self.space.evaluator else None
            with heartbeat(trial):
                result, cached = self.evaluations.evaluate(candidate, evaluator, context, limits=limits)
            record = TrialRecord.of_result(result, cached=cached, duration_s=time.perf_counter() - start)
            try:
                values = self.objective_values(result)
                state = TrialState.COMPLETE
            except TrialFailed as err:
                record.failure = str(err)
            record_outcome(trial, record)
        except optuna.TrialPruned as pruned:
            state = TrialState.PRUNED
            record_outcome(
                trial, pruned_record(str(pruned), curve=context.curve, duration_s=time.perf_counter() - start)
            )
        except BaseException as err:
            if not isinstance(err, Exception):
                interrupted = err
            reason = failure_reason(err)
            record_outcome(trial, failure_record(reason, curve=context.curve, duration_s=time.perf_counter() - start))
            logger.debug("trial %d failed", trial.number, exc_info=True)
        frozen = self.study.tell(trial, values, state=state, skip_if_finished=True)
        if frozen.state == TrialState.FAIL:
            logger.warning("trial %d failed: %s", frozen.number, TrialRecord.read(frozen).failure)
        self.trial_finished(frozen, candidate)
        if interrupted is not None:
            raise interrupted
        return frozen

    def evaluate(self, candidate: Candidate, evaluator: Evaluator | None = None) -> tuple[EvalResult, bool]:
        """Evaluate ``candidate`` without recording a trial (from the score cache when possible)."""
        evaluator = evaluator or self.space.evaluator
        context = EvalContext(None, seed=self.seed, device=self.device, space=self.space)
        return self.evaluations.evaluate(candidate, evaluator, context)

    def objective_values(self, result: EvalResult) -> list[float]:
        """The objective values of ``result`` in the space's order; ``TrialFailed`` for a missing or NaN one."""
        values = []
        for metric in self.space.metrics:
            value = result.value(metric)
            if value is None:
                raise TrialFailed(
                    f"the evaluator returned no {metric!r} (it returned {', '.join(result.scores) or 'nothing'})"
                )
            if math.isnan(value):
                reason = result.reasons.get(metric, "no reason given")
                raise TrialFailed(f"{metric} is NaN: {reason}")
            if math.isinf(value):
                raise TrialFailed(f"{metric} is {value}: an objective must be finite")
            values.append(float(value))
        return values

    def trial_finished(self, trial: FrozenTrial, candidate: Candidate | None) -> None:
        """Tell the observers (the ``trial_finished`` hook, the progress bar) that ``trial`` ended.

        Runners that record trials themselves (strategies, the Ray Tune searcher) call it after each tell.
        """
        get_registry().hook.trial_finished(study=self.study, trial=trial, candidate=candidate)
        if self._progress is not None:
            self._progress(self.study, trial)


def check_device(device: str | None) -> None:
    """Refuse an unknown device, or a GPU device on a machine without one, before any trial runs."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UsageError(f"--device {device!r} is not a torch device ({err}); use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device!r}: this machine has no CUDA GPU (use cpu)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device!r}: there are {torch.cuda.device_count()} GPU(s)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device!r}: MPS is not available on this machine")


def _first_difference(old: Any, new: Any, path: str) -> str | None:
    """The first key path where two JSON-like values differ (``None`` when equal)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return None if old == new else path


class _Progress:
    """A tqdm bar with the best value so far (single objective) or the Pareto-front size."""

    def __init__(self, runner: StudyRunner, total: int) -> None:
        from tqdm import tqdm

        self.runner = runner
        self.bar = tqdm(total=total, file=sys.stderr, unit="trial", dynamic_ncols=True, desc=runner.study_name)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.bar.update(1)
        try:
            if len(study.directions) == 1:
                best = study.best_trial
                self.bar.set_postfix_str(f"best {self.runner.space.metrics[0]}={best.value:.5g} (#{best.number})")
            else:
                self.bar.set_postfix_str(f"pareto front: {len(study.best_trials)} trials")
        except ValueError:
            pass

    def close(self) -> None:
        self.bar.close()


def search(
    space: SearchSpace | str | Mapping[str, Any],
    *,
    storage: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    seed: int | None = None,
    cache: ScoreCache | str | bool | None = True,
    show_progress: bool = False,
    device: str | None = None,
    task: Any = None,
) -> optuna.Study:
    """Run a search and return its ``optuna.Study``.

    ``space`` is a ``SearchSpace``, a path to a search-space file, or a dict in the file's shape.
    ``task`` replaces the space's task: an ``automl.Task``, an ``(inputs, labels)`` pair of tensors or
    arrays, or a ``torch.utils.data.Dataset`` (converted by the ``tensors`` task plugin).
    ``n_trials=None`` finishes the space's budget (re-running continues the same study); an integer
    runs that many more trials. ``storage`` is any Optuna storage URL (default ``sqlite:///automl.db``).

    Example::

        import automl
        study = automl.search("search_spaces/nb201_digits.toml", storage=":memory:", n_trials=5)
        print(study.best_trial.user_attrs["candidate"]["arch"])
    """
    space = as_space(space)
    if task is not None:
        from automl.tasks import Task

        if not isinstance(task, Task):
            # Tensors and datasets become a task through the built-in tasks plugin.
            from automl_plugins.tasks import as_task

            task = as_task(task)
        space = space.with_task(task)
    runner = StudyRunner(space, storage=storage, study_name=study_name, seed=seed, cache=cache, device=device)
    return runner.run(n_trials, show_progress=show_progress)


def as_space(space: SearchSpace | str | Mapping[str, Any]) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        return SearchSpace.from_dict(space)
    return SearchSpace.from_file(space)


def evaluate(
    candidate: Candidate, evaluator: Evaluator | Mapping[str, Any] | str, *, seed: int = 0, device: str | None = None
) -> EvalResult:
    """Score one candidate with an evaluator (an instance, a name, or a table in the file's shape).

    The cost figures are in ``result.costs``. Nothing is recorded or cached.
    """
    from automl.evaluation import run_evaluator

    if isinstance(evaluator, str):
        evaluator = {"name": evaluator}
    if isinstance(evaluator, Mapping):
        cls = get_registry().get("evaluators", evaluator.get("name", ""), key="evaluator.name")
        evaluator = cls.configure(evaluator, key="evaluator")
    candidate.seed = seed
    return run_evaluator(candidate, evaluator, EvalContext(None, seed=seed, device=device))


def trials_in(study: optuna.Study, states: Sequence[TrialState] = FINISHED) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=tuple(states))
