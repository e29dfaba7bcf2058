"""Starting Ray on this machine, or joining a running Ray cluster, for the length of one search."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Ray keeps Unix sockets under its temp folder; their paths must fit in 107 bytes, and Ray appends
# about 60 characters (session_<date>_<pid>/sockets/plasma_store) to the folder it is given.
_MAX_TEMP_DIR = 45


def resolve_address(address: str | None, given: str | None = None) -> str | None:
    """The cluster to join: ``given`` (``automl run --ray-address``) before the file's ``address``."""
    return given or address or None


@contextlib.contextmanager
def ray_session(folder: Path, *, address: str | None = None, num_cpus: int | None = None) -> Iterator[bool]:
    """Make Ray available inside the block; yields whether this call started it.

    - Ray already initialised in this process (a notebook, a test fixture): used as it is.
    - ``address`` given: join that cluster (``"auto"`` finds one started with ``ray start`` here).
    - Otherwise start a private Ray on this machine with ``num_cpus`` (default: every CPU), no
      dashboard, and its temp folder inside ``folder``; it is shut down when the block ends.

    ``RAY_AUTH_MODE=disabled`` keeps Ray from writing a token to the home folder.
    """
    import ray

    if ray.is_initialized():
        yield False
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Trials run in the search's working directory, so relative paths mean what they mean locally.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    # The study is the record of every trial; Ray's own per-trial CSV/JSON/TensorBoard files add nothing.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # The automl command prints its own summary; Ray Tune's progress tables would bury it.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    temp_dir = None
    if address:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    else:
        temp_dir = _temp_dir(folder / "ray-tmp")
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            _temp_dir=temp_dir,
            logging_level="WARNING",
            log_to_driver=False,
        )
    try:
        yield True
    finally:
        ray.shutdown()
        if temp_dir is not None and Path(temp_dir).is_symlink():
            Path(temp_dir).unlink()


def _temp_dir(wanted: Path) -> str:
    """``wanted`` (absolute), or a short link to it in the system temp folder when its path is too long."""
    wanted = wanted.absolute()
    wanted.mkdir(parents=True, exist_ok=True)
    if len(str(wanted)) <= _MAX_TEMP_DIR:
        return str(wanted)
    link = Path(tempfile.gettempdir()) / f"automl-ray-{hashlib.sha1(str(wanted).encode()).hexdigest()[:10]}"
    if link.is_symlink() and Path(os.readlink(link)) != wanted:
        link.unlink()
    if not link.exists():
        link.symlink_to(wanted, target_is_directory=True)
    return str(link)


def cluster_gpus() -> float:
    """GPUs the running Ray cluster offers (0 on a CPU-only machine)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))
