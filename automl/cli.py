"""The ``automl`` command line."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from automl.commands import Command
from automl.errors import AutomlError, UsageError

STORAGE_HELP = "Optuna storage URL or journal file (default: $AUTOML_STORAGE or sqlite:///automl.db)"


def _add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", default=None, help=STORAGE_HELP)


# -- run -------------------------------------------------------------------------------------------
def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", help="search-space file (TOML)")
    parser.add_argument(
        "--trials", type=int, default=None, help="run N more trials (default: finish the file's total budget)"
    )
    _add_storage(parser)
    parser.add_argument("--study", default=None, help="study name (default: the file's [study] name)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the file's [study] seed)")
    parser.add_argument(
        "--sampler-seed",
        type=int,
        default=None,
        help="seed of the sampler only (default: --seed); one per process sharing a study",
    )
    parser.add_argument(
        "--ray-address", default=None, help="Ray cluster for the ray_tune and two_stage strategies (auto or host:port)"
    )
    parser.add_argument("--cache", default=None, help="score-cache file (default: $AUTOML_CACHE or automl-cache.db)")
    parser.add_argument("--no-cache", action="store_true", help="evaluate every candidate, even repeated ones")
    parser.add_argument("--device", default=None, help="torch device for evaluators (default: cuda if present)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per evaluation, here and on Ray workers (default: $AUTOML_THREADS or 1); "
        "part of the score-cache key, since the thread count changes the numbers",
    )
    parser.add_argument("--top", type=int, default=5, help="best trials to print at the end")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of every failed trial")
    parser.add_argument(
        "--retry-dead", action="store_true", help="evaluate once more the candidates of trials whose worker died"
    )


def _run(args: argparse.Namespace) -> int:
    from automl.report import study_summary
    from automl.runner import StudyRunner
    from automl.space import SearchSpace

    if args.trials is not None and args.trials < 1:
        raise AutomlError(f"--trials must be at least 1, got {args.trials}")
    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise UsageError(f"--threads must be between 1 and 1024, got {args.threads}")
    if args.verbose:
        logging.getLogger("automl").setLevel(logging.DEBUG)
    _stop_on_signals()
    space = SearchSpace.from_file(args.space)
    runner = StudyRunner(
        space,
        storage=args.storage,
        study_name=args.study,
        seed=args.seed,
        cache=False if args.no_cache else (args.cache or True),
        device=args.device,
        sampler_seed=args.sampler_seed,
        options={
            key: value
            for key, value in (("ray_address", args.ray_address), ("threads", args.threads))
            if value is not None
        },
        retry_dead=args.retry_dead,
    )
    if runner.dead_trials:
        print(
            f"failed {len(runner.dead_trials)} trial(s) left running by a worker that died: "
            f"{', '.join(map(str, runner.dead_trials))}" + (" (retrying their candidates)" if args.retry_dead else ""),
            file=sys.stderr,
        )
    before = runner.finished_trials()
    if args.trials is None and runner.remaining() == 0:
        print(
            f"study {runner.study_name!r} already has {before} finished trials (budget "
            f"{space.study.n_trials}); pass --trials N to run more",
            file=sys.stderr,
        )
    elif before:
        print(f"continuing study {runner.study_name!r} ({before} trials finished)", file=sys.stderr)
    runner.run(args.trials, show_progress=not args.quiet and sys.stderr.isatty())
    print(study_summary(runner.study, top=args.top, storage=runner.storage))
    if runner.cache is not None and runner.cache.hits:
        print(f"score cache: {runner.cache.hits} hit(s), {runner.cache.misses} miss(es) ({runner.cache.path})")
    return 0


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the current trial as interrupted, the way Ctrl-C does."""
    import signal

    from automl.errors import Interrupted

    def stop(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop)


# -- studies / show / export -------------------------------------------------------------------------
def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")


def _print_json(data: object) -> None:
    print(json.dumps(_plain(data), indent=1, default=str, allow_nan=False))


def _plain(data: object) -> object:
    """``data`` with NaN and infinities as ``null`` (JSON has neither)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data


def _studies_arguments(parser: argparse.ArgumentParser) -> None:
    _add_storage(parser)
    _add_json(parser)


def _studies(args: argparse.Namespace) -> int:
    from automl.report import studies_data, studies_table
    from automl.storage import open_storage

    storage = open_storage(args.storage, read_only=True)
    if args.json:
        _print_json(studies_data(storage))
    else:
        print(studies_table(storage))
    return 0


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="study name")
    _add_storage(parser)
    parser.add_argument("--top", type=int, default=10, help="best trials to print (one objective)")
    _add_json(parser)


def _show(args: argparse.Namespace) -> int:
    from automl.report import study_summary
    from automl.storage import load_study, open_storage

    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    storage = open_storage(args.storage, read_only=True)
    study = load_study(args.study, storage)
    if args.json:
        from automl.report import study_summary_data

        _print_json(study_summary_data(study, top=args.top, storage=storage))
        return 0
    described = study.user_attrs.get("automl.space") or {}
    if described:
        print(
            f"space: {described.get('source')}  task: {described.get('task')}  "
            f"dimensions: {', '.join(described.get('dimensions', []))}  evaluator: {described.get('evaluator')}"
        )
    print(study_summary(study, top=args.top, storage=storage))
    for key, value in sorted(study.user_attrs.items()):
        if key.startswith("strategy."):
            print(f"{key[len('strategy.') :]}: {json.dumps(value, default=str)}")
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="study name")
    _add_storage(parser)
    parser.add_argument(
        "--format",
        choices=("csv", "json", "jsonl"),
        default="csv",
        help="csv (default), json (one array of records) or jsonl (JSON Lines: one record a line)",
    )
    parser.add_argument("--out", default="-", help="output file (default: standard output)")
    parser.add_argument(
        "--force", action="store_true", help="write --out even over a study storage (the one read included)"
    )


def _export(args: argparse.Namespace) -> int:
    from automl.records import study_records
    from automl.storage import load_study, open_storage

    def read() -> list[dict]:
        storage = open_storage(args.storage, read_only=True)
        return study_records(load_study(args.study, storage), storage=storage)

    if args.out == "-":
        _write_records(sys.stdout, read(), args.format)
        return 0
    out = _export_target(args.out, args.storage, args.force)
    # Written beside the target, which is created before the study is read (so an unwritable place fails
    # at once), and renamed over it: an export never leaves a half-written file.
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        f = temporary.open("x", newline="")
    except OSError as err:
        raise UsageError(f"--out {args.out}: cannot write there ({err.strerror or err})") from None
    try:
        with f:
            records = read()
            _write_records(f, records, args.format)
        os.replace(temporary, out)
    except OSError as err:
        raise UsageError(f"--out {args.out}: cannot write ({err.strerror or err})") from None
    finally:
        temporary.unlink(missing_ok=True)
    print(f"wrote {len(records)} trials to {args.out}", file=sys.stderr)
    return 0


def _write_records(out: TextIO, records: list[dict], format: str) -> None:
    from automl.records import columns

    if format == "jsonl":
        out.writelines(json.dumps(record, default=str) + "\n" for record in records)
    elif format == "json":
        out.write("[\n" + ",\n".join(json.dumps(record, default=str) for record in records) + "\n]\n")
    else:
        writer = csv.DictWriter(out, fieldnames=columns(records))
        writer.writeheader()
        writer.writerows(records)


def _export_target(out: str, storage: str | None, force: bool) -> Path:
    """The checked ``--out`` path: its folder exists and is writable, and it is not a study storage."""
    from automl.storage import SQLITE_MAGIC, storage_files

    path = Path(out)
    if path.is_dir():
        raise UsageError(f"--out {out}: is a directory")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"--out {out}: no such folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"--out {out}: not writable")
    if force or not path.exists():
        return path
    if any(path.resolve() == f.resolve() for f in storage_files(storage)):
        raise UsageError(f"--out {out}: is the study storage being read; pass --force to overwrite it")
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as err:
        raise UsageError(f"--out {out}: cannot read it ({err.strerror})") from None
    if head.startswith(SQLITE_MAGIC):
        raise UsageError(f"--out {out}: is a SQLite database; pass --force to overwrite it")
    if head.startswith(b'{"op_code"'):
        raise UsageError(f"--out {out}: is a journal storage; pass --force to overwrite it")
    return path


# -- plugins -----------------------------------------------------------------------------------------
def _plugins_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", "-v", action="store_true", help="also list each method's options")
    _add_json(parser)


def _plugins(args: argparse.Namespace) -> int:
    from automl.registry import get_registry

    registry = get_registry()
    if args.json:
        _print_json(_plugins_data(registry))
        return 0
    for info in registry.plugins.values():
        print(f"{info.name} {info.version} ({info.source})")
        for kind, names in info.registered.items():
            print(f"  {kind}: {', '.join(names)}")
            if args.verbose and kind != "commands":
                for name in names:
                    cls = registry.get(kind, name)
                    print(f"    {name}: {getattr(cls, 'description', '')}")
                    for option, rule in getattr(cls, "options", {}).items():
                        print(f"      {option}: {rule.describe()}{' — ' + rule.help if rule.help else ''}")
    for name, error in registry.failures:
        print(f"{name}: FAILED TO LOAD ({error})")
    return 0


def _plugins_data(registry: object) -> dict:
    plugins = []
    for info in registry.plugins.values():
        methods = {}
        for kind, names in info.registered.items():
            methods[kind] = []
            for name in names:
                cls = registry.get(kind, name)
                entry = {"name": name, "description": getattr(cls, "description", None) or getattr(cls, "help", "")}
                if kind != "commands":
                    entry["options"] = {
                        option: {"rule": rule.describe(), "help": rule.help}
                        for option, rule in getattr(cls, "options", {}).items()
                    }
                methods[kind].append(entry)
        plugins.append({"name": info.name, "version": info.version, "source": info.source, "registered": methods})
    failures = [{"name": name, "error": str(error)} for name, error in registry.failures]
    return {"plugins": plugins, "failures": failures}


CORE_COMMANDS = (
    Command("run", "run (or continue) a search from a search-space file", _run_arguments, _run),
    Command("studies", "list the studies in a storage", _studies_arguments, _studies),
    Command("show", "a study's best trials or Pareto front", _show_arguments, _show),
    Command("export", "a study's trials as CSV, a JSON array or JSON Lines", _export_arguments, _export),
    Command("plugins", "the loaded plugins and what each registered", _plugins_arguments, _plugins),
)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; plugins (and their commands) are loaded only when ``argv`` names a plugin's command.

    A core command (``run``, ``studies``, ``show``, ``export``, ``plugins``), ``--version``, ``--help``
    and no command at all parse without loading plugins (the help says that ``automl plugins`` lists the
    commands plugins add); any other first word loads them, to run that command or to list the choices.
    """
    from automl import __version__

    parser = argparse.ArgumentParser(
        prog="automl",
        description="Plugin-based AutoML search on Optuna studies.",
        epilog="Plugins add more commands (the dashboard: automl tui; automl score; ...): "
        "`automl plugins` lists them, `automl COMMAND --help` describes one.",
    )
    parser.add_argument("--version", action="version", version=f"automl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: list[Command] = list(CORE_COMMANDS)
    core = {c.name for c in commands}
    given = list(argv if argv is not None else sys.argv[1:])
    words = [a for a in given if not a.startswith("-")]
    needs_plugins = bool(words) and words[0] not in core and not {"--version", "-h", "--help"} & set(given[:1])
    if needs_plugins:
        from automl.registry import get_registry

        registry = get_registry()
        commands += [registry.get("commands", n) for n in registry.names("commands") if n not in core]
    for command in commands:
        child = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(child)
        child.set_defaults(_run=command.run)
    return parser


class _OneLine(logging.Formatter):
    """``automl: message``; a traceback only when the record carries one (``--verbose``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"automl: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record arrives (it may be replaced after start-up)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _setup_logging() -> None:
    logger = logging.getLogger("automl")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(_OneLine())
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    _setup_logging()
    try:  # everything inside the guard: Ctrl-C while the libraries load is a clean interruption too
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        # After parsing: --version and --help answer without importing Optuna.
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # here, so a reader that closed the pipe is seen below, not at exit
        return code
    except BrokenPipeError:
        # The reader stopped early (`automl export ... | head -1`): what it read is complete lines; exit
        # as a command killed by SIGPIPE does (141 = 128 + 13), without a traceback. Standard output is
        # pointed at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except AutomlError as err:
        print(f"automl: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        import signal

        from automl.errors import Interrupted

        print(
            "automl: interrupted; every finished trial is stored, run the same command again to continue",
            file=sys.stderr,
        )
        if isinstance(err, Interrupted):
            return 128 + int(getattr(signal, err.signal_name, signal.SIGTERM))
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
