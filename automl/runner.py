"""The study runner: creates or resumes an Optuna study and evaluates one candidate per trial."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.cache import ScoreCache, cache_key
from automl.candidate import Candidate
from automl.costs import compute_costs
from automl.errors import AutomlError, TrialFailed
from automl.evaluators import EvalContext, EvalResult, Evaluator
from automl.registry import get_registry
from automl.space import SearchSpace
from automl.storage import open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
SPACE_ATTR = "automl.space"
RAW_ATTR = "automl.raw"


class StudyRunner:
    """Runs a search space against one Optuna study.

    Every trial records these user attributes:

    - ``candidate``: ``{"id", "arch", "arch_kind"}`` (set as soon as the candidate is sampled);
    - ``result``: ``{"scores", "costs", "info", "reasons", "duration_s", "cached"}``;
    - ``failure``: the reason, for failed trials;
    - any attributes a strategy passes (``stage`` and the like).

    ``automl.records.trial_record`` flattens them into ``score.*``/``cost.*`` columns.
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
    ) -> None:
        self.space = space
        self.seed = space.study.seed if seed is None else seed
        # Several processes sharing one study need different sampler seeds but the same evaluation seed.
        self.sampler_seed = self.seed if sampler_seed is None else sampler_seed
        self.device = device
        if cache is True or cache is None:
            cache = ScoreCache()
        elif isinstance(cache, str):
            cache = ScoreCache(cache)
        self.cache: ScoreCache | None = None if cache is False else cache
        self.storage = open_storage(storage)
        self.study_name = study_name or space.study.name
        self.study = self._open_study()
        self.last_candidate: Candidate | None = None
        self._progress: _Progress | None = None
        self._data_fingerprint: str | None = None

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
                callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [self._after_trial]
                if n_trials is None:
                    callbacks.append(optuna.study.MaxTrialsCallback(self.space.study.n_trials, states=FINISHED))
                self.study.optimize(
                    self.objective, n_trials=budget, timeout=timeout, catch=(Exception,), callbacks=callbacks
                )
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
        """Evaluate one candidate as a recorded trial and return the stored trial.

        ``params`` fixes the candidate (prefixed parameter names, as ``SearchSpace.candidate`` takes);
        ``evaluator`` replaces the space's (a strategy's oracle); ``attrs`` are extra user attributes.
        """
        if params:
            # An enqueued trial is the public way to fix a candidate: the next ask() pops it and every
            # dimension's suggest returns exactly these values.
            self.study.enqueue_trial(dict(params), skip_if_exists=False)
        trial = self.study.ask()
        state, values = TrialState.COMPLETE, None
        try:
            values = self.objective(trial, evaluator=evaluator, attrs=attrs)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except Exception:  # noqa: BLE001 - the reason is stored on the trial; the search goes on
            state = TrialState.FAIL
        frozen = self.study.tell(
            trial, values if state == TrialState.COMPLETE else None, state=state, skip_if_finished=True
        )
        self._after_trial(self.study, frozen)
        return frozen

    def objective(
        self,
        trial: optuna.trial.BaseTrial,
        *,
        evaluator: Evaluator | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> list[float]:
        """Sample, evaluate and record one trial; returns the objective values."""
        start = time.perf_counter()
        evaluator = evaluator or self.space.evaluator
        candidate: Candidate | None = None
        context = EvalContext(trial, seed=self.seed, device=self.device)
        try:
            for key, value in (attrs or {}).items():
                trial.set_user_attr(key, value)
            candidate = self.space.sample(trial)
            candidate.seed = self.seed
            self.last_candidate = candidate
            trial.set_user_attr(
                "candidate",
                {
                    "id": candidate.id,
                    "arch": candidate.attrs.get("arch"),
                    "arch_kind": candidate.attrs.get("arch_kind"),
                    "arch_key": candidate.arch_key,
                },
            )
            result, cached = self.evaluate(candidate, evaluator, context)
            record = {
                "scores": _jsonable(result.scores),
                "costs": _jsonable(result.info.get("costs", {})),
                "info": {k: v for k, v in result.info.items() if k != "costs"},
                "reasons": result.reasons,
                "duration_s": round(time.perf_counter() - start, 6),
                "cached": cached,
            }
            trial.set_user_attr("result", record)
            return self.objective_values(result)
        except optuna.TrialPruned as pruned:
            trial.set_user_attr(
                "result",
                {
                    "scores": {},
                    "costs": {},
                    "info": {"curve": context.curve},
                    "reasons": {},
                    "duration_s": round(time.perf_counter() - start, 6),
                    "cached": False,
                    "pruned": str(pruned),
                },
            )
            raise
        except BaseException as err:
            reason = str(err) if isinstance(err, TrialFailed) else f"{type(err).__name__}: {err}"
            if isinstance(err, KeyboardInterrupt):
                reason = "interrupted"
            trial.set_user_attr("failure", reason)
            if context.curve:
                trial.set_user_attr(
                    "result",
                    {
                        "scores": {},
                        "costs": {},
                        "info": {"curve": context.curve},
                        "reasons": {},
                        "cached": False,
                        "duration_s": round(time.perf_counter() - start, 6),
                    },
                )
            raise

    def evaluate(
        self, candidate: Candidate, evaluator: Evaluator | None = None, context: EvalContext | None = None
    ) -> tuple[EvalResult, bool]:
        """Evaluate ``candidate`` (from the score cache when possible); returns the result and whether cached."""
        evaluator = evaluator or self.space.evaluator
        context = context or EvalContext(None, seed=self.seed, device=self.device)
        key = None
        if self.cache is not None and evaluator.cacheable:
            key = cache_key(candidate.id, evaluator.settings_key(), self.data_fingerprint(), self.seed)
            hit = self.cache.get(key)
            if hit is not None:
                return hit, True
        result = EvalResult.coerce(evaluator.evaluate(candidate, context))
        if "costs" not in result.info:
            result.info["costs"] = compute_costs(candidate.build_model(), candidate.task.example_input())
        if context.curve and "curve" not in result.info:
            result.info["curve"] = context.curve
        if key is not None:
            self.cache.put(
                key,
                candidate_id=candidate.id,
                evaluator=evaluator.name,
                data=self.data_fingerprint(),
                seed=self.seed,
                result=result,
            )
        return result, False

    def data_fingerprint(self) -> str:
        if self._data_fingerprint is None:
            self._data_fingerprint = self.space.task.fingerprint()
        return self._data_fingerprint

    def objective_values(self, result: EvalResult) -> list[float]:
        """The objective values of ``result`` in the space's order; ``TrialFailed`` for a missing or NaN one."""
        values = []
        costs = result.info.get("costs", {})
        for metric in self.space.metrics:
            value = result.scores.get(metric, costs.get(metric))
            if value is None:
                raise TrialFailed(
                    f"the evaluator returned no {metric!r} (it returned {', '.join(result.scores) or 'nothing'})"
                )
            if math.isnan(value):
                reason = result.reasons.get(metric, "no reason given")
                raise TrialFailed(f"{metric} is NaN: {reason}")
            values.append(float(value))
        return values

    def trial_finished(self, trial: FrozenTrial, candidate: Candidate | None = None) -> None:
        """Tell the observers (the ``trial_finished`` hook, the progress bar) that ``trial`` ended.

        Runners that record trials themselves (strategies, the Ray Tune searcher) call it after each tell.
        """
        candidate = candidate if candidate is not None else self.last_candidate
        get_registry().hook.trial_finished(study=self.study, trial=trial, candidate=candidate)
        self.last_candidate = None
        if self._progress is not None:
            self._progress(self.study, trial)

    def _after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.trial_finished(trial)


def _jsonable(values: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


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
) -> optuna.Study:
    """Run a search and return its ``optuna.Study``.

    ``space`` is a ``SearchSpace``, a path to a search-space file, or a dict in the file's shape.
    ``n_trials=None`` finishes the space's budget (re-running continues the same study); an integer
    runs that many more trials. ``storage`` is any Optuna storage URL (default ``sqlite:///automl.db``).

    Example::

        import automl
        study = automl.search("search_spaces/nb201_digits.toml", storage=":memory:", n_trials=5)
        print(study.best_trial.user_attrs["candidate"]["arch"])
    """
    space = as_space(space)
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

    The cost figures are in ``result.info["costs"]``. Nothing is recorded or cached.
    """
    if isinstance(evaluator, str):
        evaluator = {"name": evaluator}
    if isinstance(evaluator, Mapping):
        cls = get_registry().get("evaluators", evaluator.get("name", ""), key="evaluator.name")
        evaluator = cls.configure(evaluator, key="evaluator")
    candidate.seed = seed
    result = EvalResult.coerce(evaluator.evaluate(candidate, EvalContext(None, seed=seed, device=device)))
    result.info.setdefault("costs", compute_costs(candidate.build_model(), candidate.task.example_input()))
    return result


def trials_in(study: optuna.Study, states: Sequence[TrialState] = FINISHED) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=tuple(states))
