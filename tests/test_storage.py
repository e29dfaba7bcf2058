"""Study storages: journals survive torn writes and stale locks; read commands never create or alter one."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from automl.cli import main
from automl.errors import StorageError
from automl.storage import JournalFile, JournalLock, _owner, open_storage

TORN = '{"op_code": 8, "worker_id": "x", "trial_id": 0, "user_at'


def make_study(url: str, trials: int = 3, name: str = "s") -> None:
    study = optuna.create_study(study_name=name, storage=open_storage(url), load_if_exists=True)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=trials)


def complete(url: str, name: str = "s") -> int:
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def in_thread(work) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


# -- torn journals -------------------------------------------------------------------------------------
def test_a_torn_last_line_is_cut_away_with_a_warning_and_every_trial_kept(tmp_path, caplog):
    journal = tmp_path / "runs" / "x.log"
    make_study(str(journal))
    with journal.open("a") as f:
        f.write(TORN)
    make_study(str(journal), trials=1)
    assert complete(str(journal)) == 4
    assert "incomplete last record" in caplog.text
    lines = journal.read_bytes().split(b"\n")
    assert lines[-1] == b"", "the journal ends with a whole record"
    assert all(json.loads(line)["op_code"] is not None for line in lines[:-1])


def test_a_torn_last_line_is_skipped_by_a_read_only_open_without_writing(tmp_path, caplog):
    journal = tmp_path / "x.log"
    make_study(str(journal))
    with journal.open("a") as f:
        f.write(TORN)
    before = journal.read_bytes()
    storage = open_storage(str(journal), read_only=True)
    assert len(storage.get_all_trials(0)) == 3
    assert "incomplete last line" in caplog.text
    assert journal.read_bytes() == before
    assert not Path(f"{journal}.lock").exists()


def test_a_record_glued_behind_a_torn_one_by_an_older_writer_is_recovered(tmp_path, caplog):
    journal = tmp_path / "x.log"
    make_study(str(journal), trials=2)
    lines = journal.read_text().splitlines(keepends=True)
    # Optuna's own backend appends right behind a cut-off record: the third trial's records follow one.
    make_study(str(journal), trials=1)
    added = journal.read_text().splitlines(keepends=True)[len(lines) :]
    journal.write_text("".join(lines) + TORN + "".join(added))
    assert complete(str(journal)) == 3
    assert "cut-off record" in caplog.text


def test_a_damaged_line_inside_a_journal_is_a_storage_error_naming_it(tmp_path):
    journal = tmp_path / "x.log"
    make_study(str(journal))
    lines = journal.read_text().splitlines(keepends=True)
    lines[2] = "not json\n"
    journal.write_text("".join(lines))
    with pytest.raises(StorageError, match=r"x\.log: line 3 is not a journal record"):
        open_storage(str(journal))


def test_an_append_that_fails_part_way_takes_its_bytes_back(tmp_path):
    journal = tmp_path / "x.log"
    make_study(str(journal))
    size = journal.stat().st_size
    backend = JournalFile(str(journal))
    # A real short write: the file-size limit stops the append in the middle of its data, as a full disk would.
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, limits[1]))
    try:
        with pytest.raises(OSError) as info:
            backend.append_logs([{"op_code": 8, "worker_id": "w", "trial_id": 0, "user_attr": {"k": "v" * 500}}])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert info.value.errno == errno.EFBIG
    assert journal.stat().st_size == size
    assert complete(str(journal)) == 3


def test_concurrent_appends_keep_every_record_whole(tmp_path):
    journal = tmp_path / "x.log"
    writers = [JournalFile(str(journal)) for _ in range(4)]

    def write(backend: JournalFile, worker: int) -> None:
        for i in range(50):
            backend.append_logs([{"op_code": 8, "worker_id": f"w{worker}", "trial_id": i, "user_attr": {}}] * 2)

    threads = [in_thread(lambda b=b, w=w: write(b, w)) for w, b in enumerate(writers)]
    for thread in threads:
        thread.join(timeout=60)
    records = list(JournalFile(str(journal), read_only=True).read_logs(0))
    assert len(records) == 4 * 50 * 2
    assert not Path(f"{journal}.lock").exists()


# -- stale locks ---------------------------------------------------------------------------------------
def test_optunas_lock_left_behind_for_a_journal_in_a_subfolder_is_released(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_study("runs/x.log")
    # What Optuna's symlink lock leaves after a kill -9: a link relative to the wrong folder, so
    # stat() never sees it and Optuna waits forever.
    lock = Path("runs/x.log.lock")
    os.symlink("runs/x.log", lock)
    old = time.time() - 120
    os.utime(lock, (old, old), follow_symlinks=False)
    thread = in_thread(lambda: make_study("runs/x.log", trials=1))
    thread.join(timeout=60)
    assert not thread.is_alive(), "the run waits forever on the left-behind lock"
    assert complete("runs/x.log") == 4
    assert not lock.is_symlink()


def test_a_lock_of_a_process_that_died_is_broken_at_once(tmp_path):
    journal = tmp_path / "runs" / "x.log"
    make_study(str(journal))
    lock = JournalLock(str(journal), grace_period=3600)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    Path(lock.path).write_text(f"{_owner()} {int(dead.stdout)}\n")
    backend = JournalFile(str(journal), grace_period=3600)
    thread = in_thread(lambda: backend.append_logs([{"op_code": 8, "worker_id": "w", "trial_id": 0, "user_attr": {}}]))
    thread.join(timeout=60)
    assert not thread.is_alive(), "the lock of a dead process is waited on"
    assert not Path(lock.path).exists()


def test_a_live_lock_is_waited_for(tmp_path):
    journal = tmp_path / "x.log"
    holder = JournalLock(str(journal))
    holder.acquire()
    wrote = threading.Event()

    def append() -> None:
        JournalFile(str(journal)).append_logs([{"op_code": 8, "worker_id": "w", "trial_id": 0, "user_attr": {}}])
        wrote.set()

    thread = in_thread(append)
    assert not wrote.wait(0.3), "a lock held by a live process was broken"
    holder.release()
    assert wrote.wait(60)
    thread.join(timeout=60)


# -- read-only opens -----------------------------------------------------------------------------------
def test_read_commands_do_not_create_a_missing_storage(tmp_path, capsys):
    for storage, path in (("sqlite:///typo.db", tmp_path / "typo.db"), ("typo.log", tmp_path / "typo.log")):
        for argv in (["studies"], ["show", "s"], ["export", "s"]):
            assert main([*argv, "--storage", storage]) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "no such storage" in err, err
            assert not path.exists()


def test_the_score_cache_is_not_a_study_storage(tmp_path, capsys):
    from automl.cache import ScoreCache

    ScoreCache(tmp_path / "cache.db").db.conn.close()
    before = (tmp_path / "cache.db").read_bytes()
    for argv in (["studies"], ["show", "s"], ["export", "s"]):
        assert main([*argv, "--storage", "sqlite:///cache.db"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a study storage" in err and "scores" in err, err
    with pytest.raises(StorageError, match="not a study storage"):
        open_storage("sqlite:///cache.db")
    assert (tmp_path / "cache.db").read_bytes() == before


def test_a_read_only_sqlite_storage_refuses_writes(tmp_path):
    make_study("sqlite:///study.db")
    storage = open_storage("sqlite:///study.db", read_only=True)
    assert len(storage.get_all_trials(storage.get_study_id_from_name("s"))) == 3
    with pytest.raises(optuna.exceptions.StorageInternalError) as info:
        optuna.create_study(study_name="new", storage=storage)
    assert "readonly" in str(info.value.__cause__)
    assert complete("sqlite:///study.db") == 3


def test_a_directory_or_a_foreign_file_is_not_a_storage(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "notes.db").write_text("hello")
    with pytest.raises(StorageError, match="is a directory"):
        open_storage("sqlite:///runs", read_only=True)
    (tmp_path / "runs.log").mkdir()
    with pytest.raises(StorageError, match="is a directory"):
        open_storage("runs.log")
    with pytest.raises(StorageError, match="not a SQLite database"):
        open_storage("sqlite:///notes.db")
    assert (tmp_path / "notes.db").read_text() == "hello"


# -- export --out ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["sqlite:///study.db", "runs/study.log"])
def test_export_refuses_to_write_over_the_storage_it_reads(tmp_path, capsys, storage):
    make_study(storage)
    target = "study.db" if storage.startswith("sqlite") else storage
    before = Path(target).read_bytes()
    assert main(["export", "s", "--storage", storage, "--out", target]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the study storage being read" in err and "--force" in err, err
    assert Path(target).read_bytes() == before
    assert complete(storage) == 3


def test_export_refuses_to_write_over_any_study_storage_unless_forced(tmp_path, capsys):
    make_study("sqlite:///study.db")
    make_study("sqlite:///second.db")
    make_study("other.log")
    for target, kind in (("second.db", "SQLite database"), ("other.log", "journal storage")):
        before = Path(target).read_bytes()
        assert main(["export", "s", "--storage", "sqlite:///study.db", "--out", target]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and kind in err, err
        assert Path(target).read_bytes() == before
    assert main(["export", "s", "--storage", "sqlite:///study.db", "--out", "other.log", "--force"]) == 0
    assert Path("other.log").read_text().startswith("number,")


@pytest.mark.parametrize(
    ("out", "message"),
    [("folder", "is a directory"), ("missing/x.csv", "no such folder missing"), ("/proc/x.csv", "cannot write")],
)
def test_export_checks_out_before_reading_the_study(tmp_path, capsys, out, message):
    (tmp_path / "folder").mkdir()
    # The study does not exist: an --out error that comes first proves the path is checked before the read.
    assert main(["export", "nope", "--storage", "sqlite:///missing.db", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "missing.db").exists()


def test_export_writes_a_whole_file_and_overwrites_an_earlier_export(tmp_path, capsys):
    make_study("sqlite:///study.db")
    Path("out.csv").write_text("old\n")
    assert main(["export", "s", "--storage", "sqlite:///study.db", "--out", "out.csv"]) == 0
    assert "wrote 3 trials to out.csv" in capsys.readouterr().err
    assert len(Path("out.csv").read_text().splitlines()) == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_read_only_opens_work_whatever_characters_the_path_holds(tmp_path, monkeypatch):
    from automl.sqlite_reader import read_sqlite_trials

    folder = tmp_path / "we?ird#dir %20"
    folder.mkdir()
    monkeypatch.chdir(folder)
    make_study("sqlite:///a%b.db")
    assert len(read_sqlite_trials("sqlite:///a%b.db", "s")) == 3, "the fast reader opens the file"
    assert len(open_storage("sqlite:///a%b.db", read_only=True).get_all_studies()) == 1


def test_read_commands_leave_a_journal_as_it_was(tmp_path, capsys):
    make_study("runs/x.log")
    before = Path("runs/x.log").read_bytes()
    assert main(["studies", "--storage", "runs/x.log"]) == 0
    assert main(["show", "s", "--storage", "runs/x.log"]) == 0
    assert main(["export", "s", "--storage", "runs/x.log", "--out", "x.csv"]) == 0
    assert "wrote 3 trials" in capsys.readouterr().err
    assert Path("runs/x.log").read_bytes() == before
    assert sorted(p.name for p in Path("runs").iterdir()) == ["x.log"], "no lock or other file left"
