"""Chat threads: where they persist, and the small index behind `daedalus chat --list`.

A thread's messages and pending confirmations live in the LangGraph SQLite checkpointer
(``.daedalus/chat.db``, thread id = chat thread id). Beside the checkpointer's tables the
same file holds ``chat_threads``: one row per thread with when it was created and a
preview of its last message, so listing threads never replays checkpoints.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DB_NAME = "chat.db"
PREVIEW_CHARS = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_threads (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    preview TEXT NOT NULL DEFAULT '',
    messages INTEGER NOT NULL DEFAULT 0,
    waiting INTEGER NOT NULL DEFAULT 0
)
"""


class ThreadError(Exception):
    """A thread id that does not resolve; the message says how to find the right one."""


@dataclass(frozen=True)
class ThreadInfo:
    id: str
    created_at: str
    updated_at: str
    model: str
    title: str
    preview: str
    messages: int
    waiting: bool  # a confirmation is pending

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created_at": self.created_at, "updated_at": self.updated_at,
                "model": self.model, "title": self.title, "preview": self.preview,
                "messages": self.messages, "waiting_for_confirmation": self.waiting}


def connect(home: Path) -> sqlite3.Connection:
    """The chat database (created on first use), shared by the checkpointer and the index."""
    home.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(home / DB_NAME, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # As for the archive: a killed process loses nothing; a power cut may lose the last turn.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(_SCHEMA)
    conn.commit()
    return conn


@contextmanager
def _open(home: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(home)
    try:
        yield conn
    finally:
        conn.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 3] + "..."


class ThreadIndex:
    """The ``chat_threads`` table over an open connection (the session's own)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def create(self, *, model: str) -> str:
        thread_id = uuid.uuid4().hex[:12]
        now = _now()
        with self.conn:
            self.conn.execute(
                "INSERT INTO chat_threads (id, created_at, updated_at, model) VALUES (?, ?, ?, ?)",
                (thread_id, now, now, model))
        return thread_id

    def resolve(self, ref: str) -> str:
        """A thread id from an exact id or a unique prefix."""
        ref = ref.strip().lower()
        if not ref:
            raise ThreadError("empty thread id; list the threads with `daedalus chat --list`")
        rows = [r[0] for r in self.conn.execute(
            "SELECT id FROM chat_threads WHERE id >= ? AND id < ? ORDER BY id LIMIT 3",
            (ref, ref + "\uffff"))]
        if ref in rows:
            return ref
        if not rows:
            raise ThreadError(f"no chat thread {ref!r} in {DB_NAME} under this directory; "
                              "list the threads with `daedalus chat --list`, or start a new one "
                              "with `daedalus chat`")
        if len(rows) > 1:
            raise ThreadError(f"thread prefix {ref!r} matches several threads ({', '.join(rows[:2])}"
                              f"{', ...' if len(rows) > 2 else ''}); type more of the id")
        return str(rows[0])

    def touch(self, thread_id: str, *, last_text: str, messages: int, waiting: bool,
              first_user_text: str = "") -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE chat_threads SET updated_at = ?, preview = ?, messages = ?, waiting = ?, "
                "title = CASE WHEN title = '' THEN ? ELSE title END WHERE id = ?",
                (_now(), _preview(last_text), messages, int(waiting), _preview(first_user_text),
                 thread_id))


def prune_checkpoints(conn: sqlite3.Connection, thread_id: str, *, keep: str) -> int:
    """Delete a thread's superseded checkpoints and their writes; returns how many went.

    The SQLite checkpointer stores every channel in full at every step, so a thread's rows
    grow with the square of its length. A chat never travels back in time, so only the
    newest checkpoint (with its pending writes: a waiting confirmation lives there) is kept.
    The checkpointer has no public way to do this (its ``prune`` is not implemented), so
    this goes to its tables, and does nothing if their layout is not the expected one.
    """
    for table in ("checkpoints", "writes"):
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not {"thread_id", "checkpoint_ns", "checkpoint_id"} <= columns:
            return 0
    with conn:
        conn.execute("DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id <> ?",
                     (thread_id, keep))
        gone = conn.execute(
            "DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id <> ?",
            (thread_id, keep)).rowcount
    return int(gone)


def list_threads(home: Path, *, limit: int = 50) -> list[ThreadInfo]:
    """Threads, most recently active first. Creates nothing when there is no chat yet."""
    if not (home / DB_NAME).is_file():
        return []
    with _open(home) as conn:
        rows = conn.execute(
            "SELECT id, created_at, updated_at, model, title, preview, messages, waiting "
            "FROM chat_threads ORDER BY updated_at DESC, created_at DESC LIMIT ?", (limit,))
        return [ThreadInfo(id=r[0], created_at=r[1], updated_at=r[2], model=r[3], title=r[4],
                           preview=r[5], messages=int(r[6]), waiting=bool(r[7])) for r in rows]
