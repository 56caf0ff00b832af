"""The app config and governance rules, fetched in the background (``GET /v1/config``,
``GET /v1/rules``).

Guarantees:

- Nothing is fetched at import or construction: the first ``current()`` of a process (the first
  request it serves) starts one daemon thread, and returns at once. A child of ``fork()`` starts
  its own on its first request (it keeps the parent's last documents meanwhile).
- ``current()`` never waits: until the first documents arrive it answers ``NO_DECISIONS``
  (sample 100%, apply no rule).
- The documents are fetched again every CONFIG_REFRESH_INTERVAL seconds, and at once when
  ``note_etag`` hears of an ETag other than the one held. A failed fetch (no answer, a timeout,
  a non-2xx status, a body that is not JSON or over ``MAX_DOCUMENT_BYTES``) keeps the last good
  documents and is retried with exponential backoff and jitter, within the refresh interval.
- A document is compiled only when its text changed; what is wrong in it is logged once.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Optional, Tuple

from .. import draws
from ..delivery.transport import Transport
from ..lifecycle import reset_in_forked_child
from ..logs import LogOnce
from .decisions import NO_DECISIONS, Decisions, compile_decisions

if TYPE_CHECKING:
    from ..config.schema import Settings

CONFIG_PATH = "/v1/config"
RULES_PATH = "/v1/rules"
ETAG_HEADER = "x-moesif-config-etag"
# Larger documents are refused whole: no real app config or rule set comes near it.
MAX_DOCUMENT_BYTES = 1_000_000


class AppConfigSource:
    """The current ``Decisions`` of one integration, kept fresh by a background thread."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._interval = settings.config_refresh_interval
        self._problems = LogOnce()
        self.decisions: Decisions = NO_DECISIONS
        # The texts the current decisions were compiled from.
        self._texts: Tuple[bytes, bytes] = (b"", b"")
        # Fetches of both documents begun, failed and completed, in this process and its parent.
        self.fetches = 0
        self.failures = 0
        self.completed = 0
        self._fresh_state()
        reset_in_forked_child(self)

    def _fresh_state(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        # False until this process's thread started.
        self.started = False

    def current(self) -> Decisions:
        """The decisions now in force; the first call of a process starts the fetching."""
        if not self.started:
            self.start()
        return self.decisions

    def start(self) -> None:
        with self._lock:
            if self.started:
                return
            self.started = True
            thread = threading.Thread(
                target=self._run, name="moesif-integrations-config", daemon=True
            )
            self._thread = thread
        thread.start()

    def note_etag(self, etag: str) -> None:
        """An events response carried ``etag``: fetch again now unless it is the one held."""
        if etag != self.decisions.etag and self.started:
            self._wake.set()

    def refresh(self) -> None:
        """Fetch again now (in the background)."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()

    def after_fork_in_child(self) -> None:
        # The parent's thread does not exist here, and its lock may be held for ever.
        self._fresh_state()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        failures = 0
        settings = self._settings
        with Transport(settings, self._stop) as transport:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    ok = self._fetch(transport)
                except Exception:
                    ok = False
                    self._problems.log(
                        "config-bug", logging.WARNING, "app config fetch failed", exc_info=True
                    )
                if ok:
                    failures = 0
                    self.completed += 1
                    wait = self._interval
                else:
                    failures += 1
                    self.failures += 1
                    ceiling = min(self._interval, settings.retry_backoff * 2 ** min(failures, 20))
                    wait = draws.uniform(ceiling / 2, ceiling)
                self._wake.wait(wait)

    def _fetch(self, transport: Transport) -> bool:
        """Both documents; True when they arrived and were taken."""
        self.fetches += 1
        config = self._get(transport, CONFIG_PATH)
        if config is None:
            return False
        rules = self._get(transport, RULES_PATH)
        if rules is None:
            return False
        config_text, etag = config
        rules_text, _rules_etag = rules
        if (config_text, rules_text) == self._texts:
            if etag != self.decisions.etag:
                current = self.decisions
                self.decisions = Decisions(current.sampling, current.governance, etag)
            return True
        try:
            config_value = json.loads(config_text)
            rules_value = json.loads(rules_text)
        except Exception:
            self._problems.log(
                "config-json",
                logging.WARNING,
                "the app config or rules are not JSON; the last good ones stay in force",
            )
            return False
        self.decisions = compile_decisions(config_value, rules_value, etag, self._problems)
        self._texts = (config_text, rules_text)
        return True

    def _get(self, transport: Transport, path: str) -> Optional[Tuple[bytes, Optional[str]]]:
        response = transport.request_once("GET", path)
        if not response.ok:
            self._problems.log(
                f"config-status-{response.status}",
                logging.WARNING,
                "GET %s failed (%s); sampling and rules stay as they are, retrying",
                path,
                response.error or response.status,
            )
            return None
        if len(response.body) > MAX_DOCUMENT_BYTES:
            self._problems.log(
                f"config-size-{path}",
                logging.WARNING,
                "GET %s answered %d bytes, over the %d allowed; ignored",
                path,
                len(response.body),
                MAX_DOCUMENT_BYTES,
            )
            return None
        return response.body, response.header(ETAG_HEADER)
