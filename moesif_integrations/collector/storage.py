"""SQLite storage for what the collector receives: one table per kind, one JSON text per row."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import sqlite3
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from moesif_integrations.collector.payloads import check_nesting
from moesif_integrations.core import json_backend

KINDS = ("events", "users", "companies", "subscriptions", "actions")

# Columns the events table keeps beside the JSON, so the inspector filters in SQL.
_EVENT_COLUMNS = (
    ("method", "TEXT"),
    ("uri", "TEXT"),
    ("status", "INTEGER"),
    ("user_id", "TEXT"),
    ("company_id", "TEXT"),
    ("direction", "TEXT"),
)
# The one field that names an item of the other kinds.
KEY_FIELDS = {
    "users": "user_id",
    "companies": "company_id",
    "subscriptions": "subscription_id",
    "actions": "action_name",
}


@dataclass(frozen=True)
class StoredItem:
    """One stored object with what the collector noted when it arrived."""

    id: int
    received_at: str
    app_id: str
    body: Any


def _json_text(item: Any) -> str:
    """The item as JSON text; BadPayloadError when it nests too deeply to store and read back."""
    orjson = json_backend.orjson
    if orjson is not None:
        try:
            return orjson.dumps(item).decode("utf-8")
        except TypeError:
            pass  # integers past 64 bits, payloads.NonFinite, deep nesting: see below
    check_nesting(item)
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


def _text_or_none(value: Any) -> Optional[str]:
    return None if value is None or value == "" else str(value)


def _event_columns(event: Any) -> Tuple[Any, ...]:
    """(method, uri, status, user_id, company_id, direction) of a stored event."""
    request = event.get("request") if isinstance(event, dict) else None
    response = event.get("response") if isinstance(event, dict) else None
    request = request if isinstance(request, dict) else {}
    response = response if isinstance(response, dict) else {}
    status = response.get("status")
    return (
        _text_or_none(request.get("verb")),
        _text_or_none(request.get("uri")),
        status if isinstance(status, int) and not isinstance(status, bool) else None,
        _text_or_none(event.get("user_id")),
        _text_or_none(event.get("company_id")),
        _text_or_none(event.get("direction")),
    )


@dataclass(frozen=True)
class ItemFilter:
    """What the inspector asks for; every condition given must hold. ``status_class`` is
    1-5 (``2`` for 2xx); text conditions other than ``user_id`` and ``company_id`` match a
    substring, case-insensitively. Conditions on event columns match nothing for other kinds."""

    status_class: Optional[int] = None
    user_id: Optional[str] = None
    company_id: Optional[str] = None
    path: Optional[str] = None
    method: Optional[str] = None
    direction: Optional[str] = None
    app_id: Optional[str] = None
    text: Optional[str] = None

    def where(self, kind: str) -> Tuple[str, List[Any]]:
        """A SQL condition (``1`` for none) and its parameters."""
        clauses: List[str] = []
        params: List[Any] = []
        event_conditions = (
            self.status_class,
            self.user_id,
            self.company_id,
            self.path,
            self.method,
            self.direction,
        )
        if kind != "events" and any(value is not None for value in event_conditions):
            return "0", []
        if self.status_class is not None:
            clauses.append("status BETWEEN ? AND ?")
            params += [self.status_class * 100, self.status_class * 100 + 99]
        if self.user_id is not None:
            clauses.append("user_id = ?")
            params.append(self.user_id)
        if self.company_id is not None:
            clauses.append("company_id = ?")
            params.append(self.company_id)
        if self.method is not None:
            clauses.append("method = ? COLLATE NOCASE")
            params.append(self.method)
        if self.direction is not None:
            clauses.append("direction = ? COLLATE NOCASE")
            params.append(self.direction)
        if self.app_id is not None:
            clauses.append("app_id = ?")
            params.append(self.app_id)
        for column, value in (("uri", self.path), ("json", self.text)):
            if value is not None:
                clauses.append(f"{column} LIKE ? ESCAPE '\\'")
                params.append("%" + _escape_like(value) + "%")
        return (" AND ".join(clauses) or "1"), params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _find_malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's malloc_trim, which hands freed heap pages back to the system; None elsewhere."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_malloc_trim = _find_malloc_trim()


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
                self._add_event_columns()

    def _add_event_columns(self) -> None:
        """The filter columns, added to a file an older collector wrote and filled in."""
        present = {row[1] for row in self._conn.execute("PRAGMA table_info(events)")}
        missing = [(name, sql_type) for name, sql_type in _EVENT_COLUMNS if name not in present]
        for name, sql_type in missing:
            self._conn.execute(f"ALTER TABLE events ADD COLUMN {name} {sql_type}")
        if missing:
            names = ", ".join(f"{name} = ?" for name, _ in _EVENT_COLUMNS)
            rows = self._conn.execute("SELECT id, json FROM events").fetchall()
            self._conn.executemany(
                f"UPDATE events SET {names} WHERE id = ?",
                [(*_event_columns(json.loads(text)), row_id) for row_id, text in rows],
            )

    def insert(self, kind: str, app_id: str, items: Sequence[Any]) -> int:
        """Stores ``items`` in one transaction; returns how many were stored."""
        _check_kind(kind)
        received_at = utc_now_iso()
        if not items:
            return 0
        if kind == "events":
            names = "".join(f", {name}" for name, _ in _EVENT_COLUMNS)
            marks = ", ?" * len(_EVENT_COLUMNS)
            sql = f"INSERT INTO events (received_at, app_id, json{names}) VALUES (?, ?, ?{marks})"
            rows = [
                (received_at, app_id, _json_text(item), *_event_columns(item)) for item in items
            ]
        else:
            sql = f"INSERT INTO {kind} (received_at, app_id, json) VALUES (?, ?, ?)"
            rows = [(received_at, app_id, _json_text(item)) for item in items]
        with self._lock, self._conn:
            self._conn.executemany(sql, rows)
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

    def page(
        self,
        kind: str,
        where: ItemFilter,
        before_id: Optional[int] = None,
        after_id: Optional[int] = None,
        limit: int = 100,
    ) -> Tuple[List[StoredItem], int]:
        """The newest ``limit`` matching rows with an id below ``before_id`` and above
        ``after_id`` (newest first), and how many rows match in all."""
        _check_kind(kind)
        condition, params = where.where(kind)
        window = condition
        window_params = list(params)
        if before_id is not None:
            window += " AND id < ?"
            window_params.append(before_id)
        if after_id is not None:
            window += " AND id > ?"
            window_params.append(after_id)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT id, received_at, app_id, json FROM {kind} "
                f"WHERE {window} ORDER BY id DESC LIMIT ?",
                (*window_params, limit),
            ).fetchall()
            total = self._conn.execute(
                f"SELECT COUNT(*) FROM {kind} WHERE {condition}", params
            ).fetchone()[0]
        items = [StoredItem(row[0], row[1], row[2], json.loads(row[3])) for row in rows]
        return items, int(total)

    def get(self, kind: str, item_id: int) -> Optional[StoredItem]:
        _check_kind(kind)
        with self._lock:
            row = self._conn.execute(
                f"SELECT id, received_at, app_id, json FROM {kind} WHERE id = ?", (item_id,)
            ).fetchone()
        return None if row is None else StoredItem(row[0], row[1], row[2], json.loads(row[3]))

    def last_ids(self) -> Dict[str, int]:
        """The highest id each kind ever stored (0 before the first)."""
        with self._lock:
            rows = self._conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
        last = {kind: 0 for kind in KINDS}
        last.update({str(name): int(seq) for name, seq in rows if name in last})
        return last

    def counts_by_application(self) -> Dict[str, Dict[str, int]]:
        """Stored items per application id, then per kind."""
        by_app: Dict[str, Dict[str, int]] = {}
        with self._lock:
            for kind in KINDS:
                for app_id, count in self._conn.execute(
                    f"SELECT app_id, COUNT(*) FROM {kind} GROUP BY app_id"
                ):
                    by_app.setdefault(str(app_id), {name: 0 for name in KINDS})[kind] = count
        return by_app

    def count(self, kind: str) -> int:
        _check_kind(kind)
        with self._lock:
            row = self._conn.execute(f"SELECT COUNT(*) FROM {kind}").fetchone()
        return int(row[0])

    def counts(self) -> Dict[str, int]:
        return {kind: self.count(kind) for kind in KINDS}

    def delete_all(self) -> None:
        """Deletes every row and gives the memory (or file space) they took back."""
        with self._lock:
            with self._conn:
                for kind in KINDS:
                    self._conn.execute(f"DELETE FROM {kind}")
            # DELETE only marks pages free: without VACUUM an in-memory database keeps every
            # page it ever had, and a file keeps its size.
            self._conn.execute("VACUUM")
            if _malloc_trim is not None:
                _malloc_trim(0)

    def close(self) -> None:
        with self._lock:
            self._finalizer()


def _check_kind(kind: str) -> None:
    # Table names cannot be bound as parameters, so only known names ever reach the SQL.
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
