"""Opening study storages: a SQLite file by default, a journal file, or any Optuna storage URL.

Commands that only read (``automl studies``, ``show``, ``export``) open a storage with ``read_only=True``:
a missing file is an error instead of a new empty storage, a file that holds no Optuna study is refused
instead of being given Optuna's tables, and nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages.journal import JournalFileBackend

from automl.errors import StorageError, UnknownStudyError

DEFAULT_STORAGE = "sqlite:///automl.db"
STORAGE_ENV = "AUTOML_STORAGE"
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")
SQLITE_MAGIC = b"SQLite format 3\x00"
# Optuna's own tables: a SQLite file holding other tables (the score cache, say) is not a study storage.
STUDY_TABLES = frozenset({"studies", "trials", "alembic_version", "version_info"})
LOCK_GRACE_PERIOD = 30.0

log = logging.getLogger(__name__)


def storage_url(storage: str | None) -> str:
    """The storage to use: the argument, ``$AUTOML_STORAGE``, or ``sqlite:///automl.db``."""
    return storage or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def open_storage(
    storage: str | optuna.storages.BaseStorage | None, *, read_only: bool = False
) -> optuna.storages.BaseStorage:
    """An Optuna storage for a URL, a journal-file path (``*.log``, ``*.journal``) or ``None`` (default).

    With ``read_only=True`` the storage must exist and hold Optuna's tables (SQLite) or records
    (journal); a SQLite file is opened through a read-only connection and a journal never written.
    Raises ``StorageError`` with the URL when the storage cannot be opened or is not a study storage.
    """
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    url = storage_url(storage)
    if url == ":memory:":
        return optuna.storages.InMemoryStorage()
    try:
        if "://" not in url:
            if not url.endswith(JOURNAL_SUFFIXES):
                raise StorageError(
                    f"{url}: not a storage URL; use sqlite:///FILE.db, a journal file "
                    f"ending in {', '.join(JOURNAL_SUFFIXES)}, or any Optuna storage URL"
                )
            return _open_journal(url, read_only)
        if url.startswith("sqlite:"):
            return _open_sqlite(url, read_only)
        return _open_database(url, read_only)
    except StorageError:
        raise
    except ImportError as err:
        raise StorageError(f"{_shown(url)}: {_missing_driver(url, err)}") from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, OSError, RuntimeError) as err:
        raise StorageError(f"{url}: cannot open the study storage ({_first_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - journal parsers raise plain errors on corrupt files
        raise StorageError(f"{url}: cannot open the study storage ({type(err).__name__}: {_first_line(err)})") from None


# -- database servers (PostgreSQL, MySQL) ------------------------------------------------------------
# Opening a fresh database creates Optuna's tables; two processes doing it at once race, and the loser
# gets an error although the tables are then there (PostgreSQL: UniqueViolation on
# "pg_type_typname_nsp_index", "relation ... already exists", or a second version row). Opening again
# finds them. PostgreSQL reports the conflict once the winner's transaction has committed, so a retry
# needs no wait; the bound only keeps a persistent error from looping.
CREATION_ATTEMPTS = 10

# The Python module each SQLAlchemy driver imports, and what to install for it.
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
    "mysql": "mysql-connector-python",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
}


def _open_database(url: str, read_only: bool) -> optuna.storages.RDBStorage:
    return _rdb_storage(url, skip_table_creation=read_only)


def _missing_driver(url: str, err: ImportError) -> str:
    """One line naming the missing driver module and the package that provides it."""
    cause: BaseException | None = err
    while cause is not None and not getattr(cause, "name", None):
        cause = cause.__cause__ or cause.__context__
    module = getattr(cause, "name", None)
    if not module:
        return f"cannot open the study storage (a database driver is missing: {_first_line(err)})"
    top = module.split(".")[0]
    package = _DRIVER_PACKAGES.get(top, top)
    scheme = url.split("://", 1)[0]
    hint = ""
    if scheme == "postgresql":
        hint = " (SQLAlchemy 2.1 reads postgresql:// as psycopg 3, SQLAlchemy 2.0 as psycopg2)"
    return (
        f'the database driver for {scheme}:// is not installed{hint}: pip install "{package}" (module {top} not found)'
    )


def _shown(url: str) -> str:
    """The URL as printed in messages: without its password."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: print it as given
        return url


# -- SQLite --------------------------------------------------------------------------------------------
def _open_sqlite(url: str, read_only: bool) -> optuna.storages.RDBStorage:
    database = sqlalchemy.engine.make_url(url).database
    if not database or database == ":memory:":
        return optuna.storages.RDBStorage(url)
    path = Path(database)
    if path.is_dir():
        raise StorageError(f"{url}: {database} is a directory, not a study storage")
    if path.exists():
        _check_study_database(url, path, empty_ok=not read_only)
    elif read_only:
        raise StorageError(f"{url}: no such storage ({database} does not exist)")
    return _rdb_storage(url, engine_kwargs=_engine_kwargs(path, read_only), skip_table_creation=read_only)


# Workers that start together on a fresh database race to create Optuna's tables; the losers see
# "already exists" (SQLite) or a unique violation (PostgreSQL) and find the tables made on a retry.
_CREATION_RACE = (
    "pg_type_typname_nsp_index",
    "already exists",
    "UniqueViolation",
    "duplicate key",
    "Duplicate entry",
    "UNIQUE constraint failed",
)


def _rdb_storage(url: str, **kwargs: Any) -> optuna.storages.RDBStorage:
    for attempt in range(1, CREATION_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except sqlalchemy.exc.SQLAlchemyError as err:
            if attempt == CREATION_ATTEMPTS or not any(marker in str(err) for marker in _CREATION_RACE):
                raise
            log.debug("%s: another process created the study tables at the same time; opening again", _shown(url))
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


# Every table an Optuna RDB schema holds (a database being created holds a subset of them).
OPTUNA_TABLES = frozenset(
    {
        "alembic_version",
        "studies",
        "study_directions",
        "study_system_attributes",
        "study_user_attributes",
        "trial_heartbeats",
        "trial_intermediate_values",
        "trial_params",
        "trial_system_attributes",
        "trial_user_attributes",
        "trial_values",
        "trials",
        "version_info",
    }
)


def _check_study_database(url: str, path: Path, *, empty_ok: bool) -> None:
    """Refuse a file that is not SQLite, or a SQLite database whose tables are not Optuna's."""
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError as err:
        raise StorageError(f"{url}: cannot read {path} ({err.strerror})") from None
    if not header and empty_ok:
        return
    if header != SQLITE_MAGIC:
        raise StorageError(f"{url}: cannot open the study storage ({path} is not a SQLite database)")
    try:
        connection = sqlite3.connect(readonly_sqlite_uri(path), uri=True, timeout=60)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.Error as err:
        raise StorageError(f"{url}: cannot read {path} ({_first_line(err)})") from None
    if not tables and empty_ok:
        return
    if empty_ok and tables <= OPTUNA_TABLES:
        return  # another worker is creating the study tables right now: RDBStorage finishes the schema
    if not STUDY_TABLES <= tables:
        held = ", ".join(sorted(tables)) or "none"
        raise StorageError(f"{url}: not a study storage ({path} holds other tables: {held})")


def readonly_sqlite_uri(path: Path) -> str:
    """A ``file:`` URI that opens the SQLite file ``path`` read-only (any character in the path is quoted)."""
    return f"file:{urllib.request.pathname2url(str(path.resolve()))}?mode=ro"


def _engine_kwargs(path: Path, read_only: bool) -> dict[str, Any]:
    def connect() -> sqlite3.Connection:
        if read_only:
            return sqlite3.connect(readonly_sqlite_uri(path), uri=True, timeout=60, check_same_thread=False)
        # Several processes may share one SQLite study: wait for the lock instead of failing at once.
        # WAL lets the dashboard read while a search writes, and commits without a sync each (a study
        # survives a crash of the process; only a power cut may take back its last trials).
        connection = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    return {"creator": connect}


# -- journal files -------------------------------------------------------------------------------------
def _open_journal(path: str, read_only: bool) -> optuna.storages.JournalStorage:
    file = Path(path)
    if file.is_dir():
        raise StorageError(f"{path}: is a directory, not a journal file")
    if read_only and not file.exists():
        raise StorageError(f"{path}: no such storage (the journal file does not exist)")
    if file.exists():
        with file.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head == SQLITE_MAGIC:
            raise StorageError(f"{path}: not a study storage (a SQLite database, not a journal file)")
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFile(path, read_only=read_only))


class JournalLock:
    """The writers' lock of a journal file: ``FILE.lock``, created with ``O_EXCL``, owned by one process.

    The lock file names its owner (host, PID namespace and PID). A lock left behind by a process that
    died (``kill -9`` while it wrote) is broken at once when the owner ran on this machine, and after
    ``grace_period`` seconds otherwise (a lock is held for one append, milliseconds); so is a lock of
    Optuna's own kind (a symbolic link, whose target is relative to the wrong folder when the journal
    lies in a subfolder, so Optuna's forced release never fires for it). The paths are absolute, so the
    lock works wherever the journal lives and whatever the working directory.
    """

    def __init__(self, journal: str, grace_period: float = LOCK_GRACE_PERIOD) -> None:
        self.path = os.path.abspath(journal) + ".lock"
        self.grace_period = grace_period

    def acquire(self) -> bool:
        delay = 0.001
        watched: tuple[int, float] | None = None
        watched_since = time.monotonic()
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    info = os.lstat(self.path)
                except FileNotFoundError:
                    continue  # released in between
                if (info.st_ino, info.st_mtime) != watched:
                    watched, watched_since = (info.st_ino, info.st_mtime), time.monotonic()
                unchanged = time.monotonic() - watched_since
                if self._abandoned(info, unchanged):
                    self._break(info)
                    continue
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            try:
                os.write(fd, f"{_owner()} {os.getpid()}\n".encode())
            finally:
                os.close(fd)
            return True

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _abandoned(self, info: os.stat_result, unchanged: float) -> bool:
        age = time.time() - info.st_mtime
        if unchanged > self.grace_period or age > self.grace_period:
            return True
        owner = self._owner_of(info)
        if owner is None:
            return False
        tag, pid = owner
        if tag != _owner():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def _owner_of(self, info: os.stat_result) -> tuple[str, int] | None:
        if not os.path.isfile(self.path) or os.path.islink(self.path):
            return None
        try:
            with open(self.path, "rb") as f:
                tag, pid = f.read(512).decode().split()
            return tag, int(pid)
        except (OSError, ValueError, UnicodeDecodeError):
            return None  # being written, or not ours: the grace period decides

    def _break(self, info: os.stat_result) -> None:
        """Remove the abandoned lock ``info`` describes, and no other: a lock taken in between stays."""
        aside = f"{self.path}.{uuid.uuid4().hex}.stale"
        try:
            os.rename(self.path, aside)
        except OSError:
            return
        moved = os.lstat(aside)
        if moved.st_ino != info.st_ino:
            # Another process broke the stale lock and took the lock meanwhile: give it back.
            try:
                os.link(aside, self.path, follow_symlinks=False)
            except OSError:
                pass
        else:
            log.warning("journal %s: broke a lock left by a process that ended while writing", self.path[:-5])
        os.unlink(aside)


def _owner() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "-"
    return f"{socket.gethostname()}:{namespace}".replace(" ", "_")


class JournalFile(JournalFileBackend):
    """Optuna's journal file, kept safe from interrupted writes.

    - Each append runs under ``JournalLock``; a record cut off by a crash or a full disk (a last line
      without its newline) is cut away, with a warning, before the next record is written, so it can
      never glue onto a new one. An append that fails part-way takes its partial bytes back.
    - Reading ignores an incomplete last line (with a warning when the journal is opened), and recovers
      a record glued behind a cut-off one by an older writer.
    - ``read_only=True`` never writes, locks or creates anything.
    """

    def __init__(self, path: str, *, read_only: bool = False, grace_period: float = LOCK_GRACE_PERIOD) -> None:
        path = os.path.abspath(path)
        self.read_only = read_only
        super().__init__(path, JournalLock(path, grace_period))
        if read_only:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size and _last_byte(f, size) != b"\n":
                    log.warning(
                        "journal %s: ignoring an incomplete last line (being written, or cut off by a crash)", path
                    )
        else:
            with _locked(self._lock), open(path, "r+b", buffering=0) as f:
                _cut_incomplete_tail(f, path)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        with open(self._file_path, "rb") as f:
            remaining = os.fstat(f.fileno()).st_size
            start = 0
            if log_number_from in self._log_number_offset:
                start = log_number_from
                f.seek(self._log_number_offset[start])
                remaining -= self._log_number_offset[start]
            for number, line in enumerate(f, start=start):
                remaining -= len(line)
                if remaining < 0 or not line.endswith(b"\n"):
                    return  # written after the read began, or cut off: not a record yet
                self._log_number_offset.setdefault(number + 1, self._log_number_offset[number] + len(line))
                if number >= log_number_from:
                    yield self._decode(line, number)

    def _decode(self, line: bytes, number: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
            # An older writer could append behind a cut-off record: keep the whole record at the end.
            glued = line.rfind(b'{"op_code"', 1)
            if glued > 0:
                try:
                    record = json.loads(line[glued:])
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    log.warning(
                        "journal %s: line %d starts with a cut-off record; kept the record after it",
                        self._file_path,
                        number + 1,
                    )
        if not isinstance(record, dict) or "op_code" not in record:
            raise StorageError(f"{self._file_path}: line {number + 1} is not a journal record (a damaged journal)")
        return record

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if self.read_only:
            raise StorageError(f"{self._file_path}: opened read-only")
        data = ("\n".join(json.dumps(entry, separators=(",", ":")) for entry in logs) + "\n").encode()
        # Unbuffered: a write that fails part-way is known at once and its bytes taken back.
        with _locked(self._lock), open(self._file_path, "r+b", buffering=0) as f:
            end = _cut_incomplete_tail(f, self._file_path)
            try:
                written = 0
                while written < len(data):
                    written += os.pwrite(f.fileno(), data[written:], end + written)
                os.fsync(f.fileno())
            except BaseException:
                os.ftruncate(f.fileno(), end)
                raise


class _locked:
    def __init__(self, lock: JournalLock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _last_byte(f: Any, size: int) -> bytes:
    f.seek(size - 1)
    return f.read(1)


def _cut_incomplete_tail(f: Any, path: str) -> int:
    """Truncate ``f`` after its last newline if it does not end with one; return the new size."""
    size = f.seek(0, os.SEEK_END)
    if not size or _last_byte(f, size) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        f.seek(start)
        chunk = f.read(end - start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    f.truncate(end)
    os.fsync(f.fileno())
    log.warning(
        "journal %s: removed an incomplete last record (%d bytes) left by an interrupted write", path, size - end
    )
    return end


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def load_study(
    name: str, storage: str | optuna.storages.BaseStorage | None, *, read_only: bool = False
) -> optuna.Study:
    """Load study ``name``; ``UnknownStudyError`` lists the studies the storage holds."""
    opened = open_storage(storage, read_only=read_only)
    try:
        return optuna.load_study(study_name=name, storage=opened)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(opened, include_best_trial=False))
        where = storage_url(storage) if not isinstance(storage, optuna.storages.BaseStorage) else "the storage"
        raise UnknownStudyError(
            f"no study named {name!r} in {where} (studies: {', '.join(names) if names else 'none'})"
        ) from None


def storage_files(storage: str | None) -> list[Path]:
    """The files a storage URL or journal path keeps its studies in (none for server databases)."""
    url = storage_url(storage)
    if url == ":memory:":
        return []
    if "://" not in url:
        return [Path(url)]
    if url.startswith("sqlite:"):
        database = sqlalchemy.engine.make_url(url).database
        if database and database != ":memory:":
            return [Path(database)]
    return []
