"""The app config and governance rules the collector serves, from values or watched JSON files."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
from typing import Any, Dict, List, Optional, Tuple

from moesif_integrations.core.logs import LogOnce, logger

DEFAULT_CONFIG: Dict[str, Any] = {
    "sample_rate": 100,
    "user_sample_rate": {},
    "company_sample_rate": {},
    "regex_config": [],
    "user_rules": {},
    "company_rules": {},
}
DEFAULT_RULES: List[Any] = []

_log_once = LogOnce()


def _serialise(value: Any, what: str, expected: type) -> str:
    if not isinstance(value, expected):
        expected_name = "object" if expected is dict else "array"
        raise TypeError(f"{what} must be a JSON {expected_name}, not {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from exc


class JsonDocument:
    """One served JSON document (the config or the rules).

    Set from a value, or from a file that is re-read whenever its modification time, size or
    inode changes. A file that becomes unreadable or invalid keeps the last good document.
    """

    def __init__(self, what: str, expected: type, value: Any, path: Optional[str]) -> None:
        if value is not None and path is not None:
            raise ValueError(f"give the {what} as a value or as a file path, not both")
        self._what = what
        self._expected = expected
        self._lock = threading.Lock()
        self._path: Optional[str] = None
        self._file_key: Optional[Tuple[int, int, int]] = None
        self._value: Any = None
        self._text = ""
        if path is not None:
            self.load_file(path)
        else:
            self.set(value)

    def set(self, value: Any) -> None:
        """Serves ``value`` from now on (and stops watching any file)."""
        text = _serialise(value, self._what, self._expected)
        with self._lock:
            self._path = None
            self._file_key = None
            self._value = copy.deepcopy(value)
            self._text = text

    def load_file(self, path: str) -> None:
        """Serves the file at ``path`` and watches it. Raises if it is missing or invalid."""
        key = _file_key(path)
        value, text = self._read(path)
        with self._lock:
            self._path = path
            self._file_key = key
            self._value = value
            self._text = text

    def text(self) -> str:
        """The current document as compact JSON (re-reading the file if it changed)."""
        self._refresh()
        with self._lock:
            return self._text

    def value(self) -> Any:
        self._refresh()
        with self._lock:
            return copy.deepcopy(self._value)

    def _refresh(self) -> None:
        with self._lock:
            path, known_key = self._path, self._file_key
        if path is None:
            return
        try:
            key = _file_key(path)
        except OSError as exc:
            _log_once.log(
                f"collector-stat-{path}",
                logging.WARNING,
                "collector: cannot read %s file: %s",
                self._what,
                exc,
            )
            return
        if key == known_key:
            return
        try:
            value, text = self._read(path)
        except (OSError, ValueError, TypeError) as exc:
            # Keep serving the last good document; note the bad one once per change.
            with self._lock:
                if self._path == path:
                    self._file_key = key
            logger.warning("collector: ignoring changed %s file: %s", self._what, exc)
            return
        with self._lock:
            if self._path == path:
                self._file_key = key
                self._value = value
                self._text = text

    def _read(self, path: str) -> Tuple[Any, str]:
        with open(path, encoding="utf-8") as file:
            raw = file.read()
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{self._what} file {path} is not valid JSON: {exc}") from exc
        return value, _serialise(value, f"{self._what} file {path}", self._expected)


def _file_key(path: str) -> Tuple[int, int, int]:
    stat = os.stat(path)
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class AppConfig:
    """The config and rules together, with an ETag that changes whenever either does."""

    def __init__(
        self,
        config: Optional[Dict[str, Any]] = None,
        rules: Optional[List[Any]] = None,
        config_path: Optional[str] = None,
        rules_path: Optional[str] = None,
    ) -> None:
        if config is None and config_path is None:
            config = DEFAULT_CONFIG
        if rules is None and rules_path is None:
            rules = DEFAULT_RULES
        self.config = JsonDocument("config", dict, config, config_path)
        self.rules = JsonDocument("rules", list, rules, rules_path)

    def snapshot(self) -> Tuple[str, str, str]:
        """(config JSON, rules JSON, ETag), consistent with each other."""
        config_text = self.config.text()
        rules_text = self.rules.text()
        digest = hashlib.sha256()
        digest.update(config_text.encode("utf-8"))
        digest.update(b"\n")
        digest.update(rules_text.encode("utf-8"))
        return config_text, rules_text, digest.hexdigest()[:32]

    @property
    def etag(self) -> str:
        return self.snapshot()[2]
