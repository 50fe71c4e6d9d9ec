"""Opening the archive: URLs, SQLite settings, locking behaviour, sessions."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from daedalus.archive import store
from daedalus.archive.db import ENV_URL, default_url, open_archive, sqlite_path
from daedalus.archive.errors import ArchiveBusyError
from daedalus.archive.models import Evaluation, Run


def test_default_url_is_under_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.chdir(tmp_path)
    url = default_url(create_dir=False)
    assert sqlite_path(url) == tmp_path / ".daedalus" / "archive.db"
    assert not (tmp_path / ".daedalus").exists()
    default_url()
    assert (tmp_path / ".daedalus").is_dir()
    with open_archive() as archive:
        assert archive.url == url
    assert (tmp_path / ".daedalus" / "archive.db").is_file()


def test_env_url_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "elsewhere" / "x.db"
    monkeypatch.setenv(ENV_URL, f"sqlite:///{target}")
    monkeypatch.chdir(tmp_path)
    with open_archive() as archive, archive.session() as s:
        store.create_run(s, task="t")
    assert target.is_file() and not (tmp_path / ".daedalus").exists()
    assert sqlite_path("postgresql+psycopg://u@h/db") is None
    assert sqlite_path("sqlite://") is None


def test_sqlite_pragmas(tmp_path: Path) -> None:
    with open_archive(f"sqlite:///{tmp_path / 'a.db'}") as archive:
        with archive.engine.connect() as conn:
            pragma = {
                name: conn.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert pragma == {
            "journal_mode": "wal",
            "foreign_keys": 1,
            "busy_timeout": 30000,
            "synchronous": 1,
        }
        with pytest.raises(IntegrityError), archive.session() as s:
            s.add(Evaluation(candidate_id="nonexistent", status="ok"))


def test_in_memory_archive_is_shared_across_threads() -> None:
    with open_archive("sqlite://") as archive:
        with archive.session() as s:
            run_id = store.create_run(s, task="t").id
        seen: list[str] = []

        def read() -> None:
            with archive.session(readonly=True) as s:
                seen.append(store.get_run(s, run_id=run_id).id)

        worker = threading.Thread(target=read)
        worker.start()
        worker.join()
        assert seen == [run_id]


def test_write_lock_is_taken_up_front_and_readers_do_not_wait(tmp_path: Path) -> None:
    """A write session holds SQLite's write lock from BEGIN (IMMEDIATE), so a second writer
    waits and, past every bounded retry, gets a clear error; readers are never blocked."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    holder = open_archive(url)
    impatient = open_archive(url, busy_timeout_s=0.05)
    with holder.session() as s:
        run_id = store.create_run(s, task="t").id
    try:
        with holder.session() as s:
            s.scalar(select(Run.id))  # a read only, yet the write lock is already held
            t0 = time.monotonic()
            with impatient.session(readonly=True) as r:
                assert store.get_run(r, run_id=run_id).task == "t"
            assert time.monotonic() - t0 < 0.5
            busy = pytest.raises(ArchiveBusyError, match=r"locked by another writer.*Fix")
            with busy, impatient.session() as w:
                store.add_spend(w, run_id=run_id, iterations=1)
    finally:
        holder.close()
    # The lock is free again: the same writer now succeeds.
    with impatient.session() as w:
        store.add_spend(w, run_id=run_id, iterations=1)
    impatient.close()


def test_blocked_writer_waits_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with open_archive(url) as first, open_archive(url) as second:
        with first.session() as s:
            run_id = store.create_run(s, task="t").id
        started = threading.Event()
        done: list[float] = []

        def writer() -> None:
            started.wait()
            t0 = time.monotonic()
            with second.session() as w:
                store.add_spend(w, run_id=run_id, iterations=1)
            done.append(time.monotonic() - t0)

        thread = threading.Thread(target=writer)
        thread.start()
        with first.session() as s:
            store.add_spend(s, run_id=run_id, iterations=1)
            started.set()
            time.sleep(0.3)  # hold the lock while the other writer tries
        thread.join(10)
        assert done and done[0] >= 0.2
        with first.session(readonly=True) as s:
            assert store.get_run(s, run_id=run_id).iterations == 2


def test_session_styles_commit_and_roll_back(archive_url: str) -> None:
    """`with archive.session() as s:` commits what it wrote; `with ... as s, s.begin():`
    commits at the inner block; an exception rolls either back; readonly never commits."""
    with open_archive(archive_url) as archive:
        with archive.session() as s:
            store.create_run(s, task="implicit")
        with archive.session() as s, s.begin():
            store.create_run(s, task="explicit")
        with pytest.raises(RuntimeError), archive.session() as s, s.begin():
            store.create_run(s, task="lost-explicit")
            raise RuntimeError("boom")
        with pytest.raises(RuntimeError), archive.session() as s:
            store.create_run(s, task="lost-implicit")
            raise RuntimeError("boom")
        with archive.session(readonly=True) as s:
            store.create_run(s, task="readonly-never-commits")
        with archive.session() as s:
            pass  # an idle session does not touch the database
        with archive.session(readonly=True) as s:
            tasks = {r.task for r in store.list_runs(s)}
        assert tasks == {"implicit", "explicit"}


def test_ensure_run_returns_the_winner_of_a_create_race(archive_url: str) -> None:
    """Two writers create the same run id at once: one insert wins, the other writer gets the
    winner's row back (not a unique-key error) and its transaction stays usable."""
    with open_archive(archive_url) as archive:
        results: dict[str, object] = {}
        inserted = threading.Event()
        release = threading.Event()

        def first() -> None:
            with archive.session() as s:
                store.ensure_run(s, task="first", run_id="race00000001")
                inserted.set()
                release.wait(30)

        def second() -> None:
            inserted.wait(30)
            with archive.session() as s:
                run = store.ensure_run(s, task="second", run_id="race00000001")
                results["task"] = run.task
                store.add_spend(s, run_id=run.id, iterations=1)

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # the second writer is now blocked behind the uncommitted insert
        release.set()
        for t in threads:
            t.join(60)
        assert results == {"task": "first"}
        with archive.session(readonly=True) as s:
            run = s.get(Run, "race00000001")
            assert run is not None and run.iterations == 1
