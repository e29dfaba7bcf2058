"""Start-up of the read commands on a 10,000-trial study: ``automl studies``, ``show`` and ``--version``.

Run:  python benchmarks/cli_startup.py [--trials 10000] [--compare PATH] [--repeat 5]

Seeds (once) the dashboard benchmark's synthetic study into a SQLite file, then times each command as a
fresh process (median of ``--repeat`` runs) and reports whether it loaded torch and the plugins.
``--compare PATH`` times the same commands with the packages found in PATH first on ``sys.path`` (a
folder holding ``automl``, ``automl_plugins`` and ``automl_tui`` of another checkout), side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from dashboard import STUDY, seed_study

PROBE = (
    "import sys, runpy\n"
    "sys.argv = ['automl'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('automl.cli', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('LOADED', 'torch' in sys.modules, 'automl_plugins' in sys.modules, file=sys.stderr)\n"
)


def timed(args: list[str], path: str | None, repeat: int) -> tuple[float, str]:
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path
    times, loaded = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, check=False
        )
        times.append(time.perf_counter() - start)
        loaded = next((line for line in done.stderr.splitlines() if line.startswith("LOADED")), "LOADED ? ?")
    _, torch, plugins = loaded.split()
    return statistics.median(times), f"torch={torch} plugins={plugins}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compare", default=None, help="another checkout's package folder, timed beside this one")
    args = parser.parse_args()
    storage = f"sqlite:///bench-dashboard-{args.trials}.db"
    seed_study(storage, args.trials)
    commands = {
        "automl --version": ["--version"],
        "automl studies": ["studies", "--storage", storage],
        "automl show": ["show", STUDY, "--storage", storage],
    }
    header = f"{'command':<18} {'this checkout':>14} {'loads':<26}"
    if args.compare:
        header += f" {'compared':>10} {'loads':<26} {'ratio':>6}"
    print(header)
    for name, argv in commands.items():
        now, loads = timed(argv, None, args.repeat)
        line = f"{name:<18} {now:>13.2f}s {loads:<26}"
        if args.compare:
            then, then_loads = timed(argv, args.compare, args.repeat)
            line += f" {then:>9.2f}s {then_loads:<26} {then / now:>5.1f}x"
        print(line)


if __name__ == "__main__":
    main()
