"""SQLite storage for what the collector receives: one table per kind, one JSON text per row."""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence

from moesif_integrations.core import json_backend

KINDS = ("events", "users", "companies", "subscriptions", "actions")


@dataclass(frozen=True)
class StoredItem:
    """One stored object with what the collector noted when it arrived."""

    id: int
    received_at: str
    app_id: str
    body: Any


def _json_text(item: Any) -> str:
    orjson = json_backend.orjson
    if orjson is not None:
        try:
            return orjson.dumps(item).decode("utf-8")
        except TypeError:
            pass  # integers past 64 bits, payloads.NonFinite: the standard library writes them
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Storage:
    """A single SQLite connection shared by all handler threads behind one lock.

    Ids come from AUTOINCREMENT so they never repeat, even after ``delete_all``: a reader that
    polls with ``since_id`` never misses or re-reads a row across a reset.
    """

    def __init__(self, db_path: str = ":memory:") -> None:
        self.db_path = db_path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(db_path, check_same_thread=False)
        # Close on garbage collection too: Python 3.13 warns about connections left open.
        self._finalizer = weakref.finalize(self, self._conn.close)
        with self._lock:
            if db_path != ":memory:":
                # WAL lets other processes read the file while we write; NORMAL is durable
                # enough for a development collector and much faster than FULL.
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            with self._conn:
                for kind in KINDS:
                    self._conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {kind} ("
                        "id INTEGER PRIMARY KEY AUTOINCREMENT, "
                        "received_at TEXT NOT NULL, "
                        "app_id TEXT NOT NULL, "
                        "json TEXT NOT NULL)"
                    )

    def insert(self, kind: str, app_id: str, items: Sequence[Any]) -> int:
        """Stores ``items`` in one transaction; returns how many were stored."""
        _check_kind(kind)
        received_at = utc_now_iso()
        rows = [(received_at, app_id, _json_text(item)) for item in items]
        if not rows:
            return 0
        with self._lock, self._conn:
            self._conn.executemany(
                f"INSERT INTO {kind} (received_at, app_id, json) VALUES (?, ?, ?)", rows
            )
        return len(rows)

    def fetch(self, kind: str, since_id: int = 0, limit: Optional[int] = None) -> List[StoredItem]:
        """Rows with an id above ``since_id``, oldest first, at most ``limit`` of them."""
        _check_kind(kind)
        with self._lock:
            cursor = self._conn.execute(
                f"SELECT id, received_at, app_id, json FROM {kind} "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (since_id, -1 if limit is None else limit),
            )
            rows = cursor.fetchall()
        return [StoredItem(row[0], row[1], row[2], json.loads(row[3])) for row in rows]

    def count(self, kind: str) -> int:
        _check_kind(kind)
        with self._lock:
            row = self._conn.execute(f"SELECT COUNT(*) FROM {kind}").fetchone()
        return int(row[0])

    def counts(self) -> Dict[str, int]:
        return {kind: self.count(kind) for kind in KINDS}

    def delete_all(self) -> None:
        with self._lock, self._conn:
            for kind in KINDS:
                self._conn.execute(f"DELETE FROM {kind}")

    def close(self) -> None:
        with self._lock:
            self._finalizer()


def _check_kind(kind: str) -> None:
    # Table names cannot be bound as parameters, so only known names ever reach the SQL.
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
