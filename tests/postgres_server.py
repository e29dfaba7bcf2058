"""A private PostgreSQL server for tests: initdb + pg_ctl in a temporary folder, on a Unix socket only."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 60


def server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (on PATH, or Debian's /usr/lib/postgresql/N/bin)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throw-away server; yields a SQLAlchemy URL (psycopg 3) for its ``postgres`` database.

    initdb refuses to run as root: as root, the server runs as ``nobody`` in a folder it owns. The
    folder is short (under /tmp) because a Unix socket path must fit in 107 bytes.
    """
    binaries = server_binaries()
    assert binaries is not None
    folder = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    data, user = folder / "data", "automl"
    prefix: list[str] = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        prefix = ["runuser", "-u", "nobody", "--"]
    run = lambda *cmd: subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True)
    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-k {folder} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-o", options,
            "-w", "-t", str(START_TIMEOUT_S), "start")  # fmt: skip
        try:
            yield f"postgresql+psycopg://{user}@/postgres?host={folder}"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
