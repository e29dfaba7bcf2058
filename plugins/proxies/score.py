"""``automl score``: proxy values for a list of architectures, without a search.

Each line of the architecture file is one architecture in the space's own string form (blank lines
and lines starting with ``#`` are skipped). For transformer spaces a line may also be a JSON record of
the FlexiBERT file (``{"id": …, "hidden_size": …, "encoder_layers": […], "glue": …}``): only the
architecture keys are passed on. Only the space's architecture dimension is used: architectures are
scored as built, without the other dimensions' choices. Results go through the score cache.

``workers`` scores in that many processes (one torch thread each); architectures with the same candidate
id (isomorphic NAS-Bench-201 cells) are scored once; ``progress`` prints the count, the rate and the time
left to standard error. Scores already in the cache are read back, so a stopped run resumes.

``aggregate`` adds a column combining several proxies' ranks (``aggregation``: ``log_rank``, AZ-NAS's
sum of log relative ranks, or ``mean_rank``) with the file's own architectures as the reference pool.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from automl import Command, EvalContext, EvalResult, SearchSpace, SpaceError
from automl.cache import ScoreCache
from automl.errors import AutomlError, UsageError
from automl.evaluation import Evaluations, run_evaluator

ARCH_KEYS = ("hidden_size", "encoder_layers")


def _space_table(space: SearchSpace | str | os.PathLike[str] | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(space, SearchSpace):
        return copy.deepcopy(space.raw), space.source
    if isinstance(space, Mapping):
        return copy.deepcopy(dict(space)), "<space>"
    return SearchSpace.from_file(space).raw, str(space)


def scoring_space(
    space: SearchSpace | str | os.PathLike[str] | Mapping[str, Any],
    proxies: Sequence[str],
    *,
    task: str | None = None,
    batch_size: int | None = None,
    proxy_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> SearchSpace:
    """The space's task and architecture dimension with a proxy evaluator for ``proxies``."""
    table, source = scoring_table(space, proxies, task=task, batch_size=batch_size, proxy_options=proxy_options)
    return SearchSpace.from_dict(table, source=source)


def scoring_table(
    space: SearchSpace | str | os.PathLike[str] | Mapping[str, Any],
    proxies: Sequence[str],
    *,
    task: str | None = None,
    batch_size: int | None = None,
    proxy_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], str]:
    """The table of ``scoring_space`` (plain data: worker processes rebuild the space from it) and its source."""
    data, source = _space_table(space)
    if not proxies:
        raise SpaceError("name at least one proxy", key="proxies")
    from automl import get_registry
    from automl.dimensions import ArchitectureDimension

    registry = get_registry()
    dims = data.get("dimensions") or []
    arch_dims = [
        d
        for d in dims
        if isinstance(d, Mapping)
        and isinstance(d.get("name"), str)
        and d["name"] in registry.names("dimensions")
        and issubclass(registry.get("dimensions", d["name"]), ArchitectureDimension)
    ]
    if not arch_dims:
        raise SpaceError("the space has no architecture dimension to score", key="dimensions", source=source)
    evaluator: dict[str, Any] = {"name": "proxies", "proxies": list(proxies)}
    if batch_size is not None:
        evaluator["batch_size"] = batch_size
    if proxy_options:
        evaluator["proxy_options"] = {k: dict(v) for k, v in proxy_options.items()}
    table = {
        "study": data.get("study", {}),
        "task": {"name": task} if task else data.get("task"),
        "dimensions": arch_dims[:1],
        "evaluator": evaluator,
        "objectives": [{"metric": proxies[0], "direction": "maximize"}],
    }
    return table, source


def _arch_text(line: str) -> str:
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError:
            return stripped
        if isinstance(record, dict) and "encoder_layers" in record:
            return record_to_arch(record)
    return stripped


def record_to_arch(record: Mapping[str, Any]) -> str:
    """A ``flexibert_glue.json`` record in the FlexiBERT space's string form (JSON of its keys if it cannot be)."""
    try:
        from automl_plugins.architectures.flexibert import from_record

        return from_record(record).to_string()
    except (ImportError, KeyError, TypeError, ValueError):
        # The space's own parser then reports what is wrong with the record.
        return json.dumps({k: record[k] for k in ARCH_KEYS if k in record})


def read_architectures(path: str | os.PathLike[str]) -> list[str]:
    """The architecture lines of ``path`` (blank lines and ``#`` comments skipped)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file of architectures (it is not UTF-8)") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read the architecture file ({err.strerror})") from None


def score_architectures(
    architectures: Iterable[str],
    space: SearchSpace | str | os.PathLike[str] | Mapping[str, Any],
    proxies: Sequence[str],
    *,
    task: str | None = None,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    proxy_options: Mapping[str, Mapping[str, Any]] | None = None,
    cache: ScoreCache | str | bool = True,
    device: str | None = None,
    source: str = "<architectures>",
    aggregate: Sequence[str] = (),
    aggregation: str = "log_rank",
    workers: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Score each architecture (the space's string form) with ``proxies``; one dict per architecture.

    Each dict has ``arch`` and one value per proxy (NaN where a proxy failed, with the reason under
    ``reason.<proxy>``). ``aggregate`` (proxy names or the preset ``az_nas``) adds ``aggregate``: the
    ``aggregation`` of each architecture's ranks among the file's architectures under those proxies
    (NaN ranked last); its proxies are scored too. ``out`` also writes them as CSV. Example::

        from automl_plugins.proxies import score_architectures
        rows = score_architectures(["|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|none~2|"],
                                   "search_spaces/nb201_digits.toml", ["synflow", "nwot"])
    """
    from automl_plugins.evaluators.proxies import AGGREGATIONS, aggregate_within, expand_aggregate

    if aggregation not in AGGREGATIONS:
        raise SpaceError(f"unknown aggregation {aggregation!r}", key="aggregation", allowed=list(AGGREGATIONS))
    aggregated = expand_aggregate(aggregate)
    proxies = list(proxies) + [p for p in aggregated if p not in proxies]
    table, table_source = scoring_table(space, proxies, task=task, batch_size=batch_size, proxy_options=proxy_options)
    scoring = SearchSpace.from_dict(table, source=table_source)
    store: ScoreCache | None
    if cache is True:
        store = ScoreCache()
    elif isinstance(cache, (str, os.PathLike)):
        store = ScoreCache(cache)
    else:
        store = cache if isinstance(cache, ScoreCache) else None
    # The one evaluation path's cache lookup and write; scoring itself may run in worker processes.
    # Proxy values only: cost figures are filled into these cache entries when a search needs them.
    evaluations = Evaluations(scoring.task, seed=seed, cache=store, threads=1)
    evaluator = scoring.evaluator
    lines = list(architectures)
    # One candidate per id: isomorphic cells share it, and are scored once.
    keyed: list[str] = []
    todo: dict[str, tuple[str, Any]] = {}
    for i, line in enumerate(lines):
        text = _arch_text(line)
        try:
            candidate = scoring.candidate_from_arch(text)
        except SpaceError as err:
            raise SpaceError(f"line {i + 1}: {err.message}", source=source) from None
        candidate.seed = seed
        keyed.append(candidate.id)
        if candidate.id not in todo:
            todo[candidate.id] = (text, candidate)
    results: dict[str, EvalResult] = {}
    for cid, (_, candidate) in todo.items():
        found = evaluations.lookup(candidate, evaluator, costs=False)
        if found is not None:
            results[cid] = found
    pending = [(cid, text) for cid, (text, _) in todo.items() if cid not in results]
    meter = _Progress(len(todo), len(results)) if progress else None

    def done(cid: str, result: EvalResult) -> None:
        results[cid] = result
        evaluations.store(todo[cid][1], evaluator, result)
        if meter is not None:
            meter.step()

    if workers > 1 and len(pending) > 1:
        with ProcessPoolExecutor(
            workers, initializer=_worker_start, initargs=(table, table_source, seed, device)
        ) as pool:
            futures = {pool.submit(_worker_score, text): cid for cid, text in pending}
            for future in as_completed(futures):
                done(futures[future], EvalResult.from_json(future.result()))
    else:
        context = EvalContext(None, seed=seed, device=device, space=scoring)
        for cid, _ in pending:
            done(cid, run_evaluator(todo[cid][1], evaluator, context, costs=False, threads=1))
    if meter is not None:
        meter.finish()
    rows = []
    for line, cid in zip(lines, keyed):
        result = results[cid]
        row: dict[str, Any] = {"arch": line.strip()}
        row.update({name: result.scores.get(name, math.nan) for name in proxies})
        row.update({f"reason.{name}": why for name, why in result.reasons.items()})
        rows.append(row)
    if aggregated:
        for row, combined in zip(rows, aggregate_within(rows, aggregated, aggregation)):
            row["aggregate"] = combined
        proxies = [*proxies, "aggregate"]
    if out is not None:
        write_csv(rows, proxies, out)
    return rows


_WORKER: dict[str, Any] = {}


def _worker_start(table: dict[str, Any], source: str, seed: int, device: str | None) -> None:
    """A scoring process: one torch thread (the processes share the cores), the space built once."""
    import torch

    torch.set_num_threads(1)
    _WORKER["space"] = SearchSpace.from_dict(table, source=source)
    _WORKER["context"] = EvalContext(None, seed=seed, device=device, space=_WORKER["space"])
    _WORKER["seed"] = seed


def _worker_score(text: str) -> dict[str, Any]:
    space = _WORKER["space"]
    candidate = space.candidate_from_arch(text)
    candidate.seed = _WORKER["seed"]
    return run_evaluator(candidate, space.evaluator, _WORKER["context"], costs=False, threads=1).to_json()


class _Progress:
    """``scored 120/6466 (80 from the cache), 1.9 cells/s, about 55 min left`` on standard error, once a second."""

    def __init__(self, total: int, cached: int) -> None:
        self.total, self.cached, self.done = total, cached, cached
        self.start = self.last = time.monotonic()

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= 1.0 or self.done == self.total:
            self.last = now
            self._print(now)

    def _print(self, now: float) -> None:
        fresh = self.done - self.cached
        rate = fresh / max(now - self.start, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else math.inf
        eta = f"about {_duration(left)} left" if math.isfinite(left) else "time left unknown"
        print(
            f"\rscored {self.done}/{self.total} ({self.cached} from the cache), {rate:.2f} cells/s, {eta}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def finish(self) -> None:
        self._print(time.monotonic())
        print(file=sys.stderr)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def write_csv(rows: Sequence[Mapping[str, Any]], proxies: Sequence[str], out: str | os.PathLike[str]) -> None:
    reasons = sorted({k for row in rows for k in row if k.startswith("reason.")})
    handle = sys.stdout if str(out) == "-" else open(out, "w", newline="")  # noqa: SIM115
    try:
        writer = csv.DictWriter(handle, fieldnames=["arch", *proxies, *reasons], restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    finally:
        if handle is not sys.stdout:
            handle.close()


# --whole-space lists at most this many distinct architectures (listing costs about 0.25 ms each; scoring
# that many would take days on a CPU), so a huge space is refused in seconds instead of listed for minutes.
WHOLE_SPACE_LIMIT = 100_000


def whole_space_architectures(space: SearchSpace | str | os.PathLike[str] | Mapping[str, Any]) -> list[str]:
    """One string per distinct architecture of the space's architecture dimension (NAS-Bench-201: the
    6,466 cells left when isomorphic strings are counted once), in a fixed order."""
    from automl_plugins.strategies.pool import NotEnumerable, enumerate_space

    scoring = scoring_space(space, ["params"])
    try:
        found = enumerate_space(scoring, limit=WHOLE_SPACE_LIMIT)
    except NotEnumerable as err:
        raise UsageError(
            f"--whole-space: parameter {err.args[0]!r} is continuous; the space cannot be listed"
        ) from None
    if found is None:
        raise UsageError(
            f"--whole-space: the space has more than {WHOLE_SPACE_LIMIT:,} architectures; "
            "give a file of the architectures to score"
        )
    return [candidate.architecture.to_string() for candidate in found]


# -- the command -------------------------------------------------------------------------------------
def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "arch_file",
        metavar="ARCH_FILE",
        nargs="?",
        help="one architecture per line, in the space's string form (or --whole-space)",
    )
    parser.add_argument(
        "--whole-space",
        action="store_true",
        help="score every distinct architecture of the space's architecture dimension instead of a file",
    )
    parser.add_argument("--space", required=True, help="search-space file (its task and architecture dimension)")
    parser.add_argument("--proxies", default="", help="comma-separated proxy names (see automl plugins)")
    parser.add_argument("--task", default=None, help="task name replacing the space's [task]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model initialisation and the minibatch")
    parser.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: the task's)")
    parser.add_argument("--out", default="-", help="CSV file (default: standard output)")
    parser.add_argument("--cache", default=None, help="score-cache file (default: $AUTOML_CACHE or automl-cache.db)")
    parser.add_argument("--no-cache", action="store_true", help="compute every score again")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    parser.add_argument("--workers", type=int, default=1, help="scoring processes, one torch thread each")
    parser.add_argument("--progress", action="store_true", help="count, rate and time left on standard error")
    parser.add_argument(
        "--aggregate",
        default="",
        help="comma-separated proxies (or az_nas) whose ranks among the file's architectures form 'aggregate'",
    )
    parser.add_argument(
        "--aggregation",
        default="log_rank",
        choices=("log_rank", "mean_rank"),
        help="log_rank: Σ log relative rank (AZ-NAS, default); mean_rank: mean relative rank",
    )


def _run(args: argparse.Namespace) -> int:
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    aggregate = [p.strip() for p in args.aggregate.split(",") if p.strip()]
    if args.whole_space == bool(args.arch_file):
        raise UsageError("give either an architecture file or --whole-space")
    if args.whole_space:
        architectures = whole_space_architectures(args.space)
        args.arch_file = "<whole space>"
    else:
        architectures = read_architectures(args.arch_file)
    if not architectures:
        raise AutomlError(f"{args.arch_file}: no architectures in the file")
    cache: ScoreCache | str | bool = False if args.no_cache else (args.cache or True)
    rows = score_architectures(
        architectures,
        args.space,
        proxies,
        task=args.task,
        seed=args.seed,
        out=args.out,
        batch_size=args.batch_size,
        cache=cache,
        device=args.device,
        source=args.arch_file,
        aggregate=aggregate,
        aggregation=args.aggregation,
        workers=args.workers,
        progress=args.progress,
    )
    if args.out != "-":
        failed = sum(1 for row in rows if any(k.startswith("reason.") for k in row))
        print(
            f"wrote {len(rows)} architectures × {len([k for k in rows[0] if k != 'arch' and '.' not in k])} "
            f"scores to {args.out}" + (f" ({failed} with a NaN score: see the reason.* columns)" if failed else ""),
            file=sys.stderr,
        )
    return 0


SCORE_COMMAND = Command("score", "training-free proxy scores for a file of architectures, as CSV", _arguments, _run)
