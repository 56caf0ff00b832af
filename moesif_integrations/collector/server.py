"""``Collector``: the local collector as an object that tests, the demo and benchmarks drive."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, Dict, Iterable, List, Optional, Type

from moesif_integrations.collector.appconfig import AppConfig
from moesif_integrations.collector.faults import Fault, FaultSwitch
from moesif_integrations.collector.handler import (
    CollectorServer,
    CollectorState,
    RequestLog,
    match_endpoint,
)
from moesif_integrations.collector.storage import Storage, StoredItem

# The hosted API's limit per /v1/events/batch (docs/protocol.md, "Transport").
DEFAULT_MAX_BODY_BYTES = 50 * 1024 * 1024
_POLL_SECONDS = 0.02


class Collector:
    """A real HTTP server speaking the Moesif collector API, storing what it gets in SQLite.

    ``application_ids`` is the set of accepted ids (None accepts any non-empty id). ``config``
    and ``rules`` (or ``config_path`` / ``rules_path``, JSON files re-read when they change) are
    what ``GET /v1/config`` and ``GET /v1/rules`` serve. ``validate`` rejects items that lack
    the fields the hosted collector requires (docs/protocol.md) with a 400.

    Requests whose ``Host`` header names another site are refused (403), so that a web page
    whose name was rebound to this address cannot read or wipe the store: the collector answers
    to ``localhost``, ``127.0.0.1``, ``[::1]`` and the address it listens on, with its port, and
    to each name in ``allowed_hosts`` (``name`` with any port, or ``name:port``), for a
    collector reached through a name of its own (a container's, a proxy's).

    After ``stop()`` the stored items stay readable; ``close()`` also releases the database.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db_path: str = ":memory:",
        application_ids: Optional[Iterable[str]] = None,
        config: Optional[Dict[str, Any]] = None,
        rules: Optional[List[Any]] = None,
        config_path: Optional[str] = None,
        rules_path: Optional[str] = None,
        *,
        verbose: bool = False,
        validate: bool = True,
        allowed_hosts: Iterable[str] = (),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        idle_timeout: Optional[float] = 300.0,
    ) -> None:
        if isinstance(application_ids, str):
            raise TypeError("application_ids must be a collection of ids, not one string")
        if isinstance(allowed_hosts, str):
            raise TypeError("allowed_hosts must be a collection of names, not one string")
        self.host = host
        self._requested_port = port
        self._state = CollectorState(
            storage=Storage(db_path),
            app_config=AppConfig(config, rules, config_path, rules_path),
            faults=FaultSwitch(),
            requests=RequestLog(),
            application_ids=None if application_ids is None else frozenset(application_ids),
            allowed_hosts=frozenset(name.strip().lower() for name in allowed_hosts),
            validate=validate,
            max_body_bytes=max_body_bytes,
            idle_timeout=idle_timeout,
            verbose=verbose,
            stopping=threading.Event(),
        )
        self._server: Optional[CollectorServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Collector:
        """Binds and serves on a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("this collector was already started")
        server = CollectorServer(self.host, self._requested_port, self._state)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"moesif-local-collector:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving within about a second, even with hung or delayed requests."""
        server = self._server
        if server is None or self._state.stopping.is_set():
            return
        self._state.stopping.set()
        self._state.faults.close()
        server.shutdown()
        server.close_connections(timeout=0.5)
        server.server_close()
        if self._thread is not None:
            self._thread.join(0.5)

    def close(self) -> None:
        """Stops and releases the database."""
        self.stop()
        self._state.storage.close()

    def __enter__(self) -> Collector:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (the one picked for port 0, once started)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the collector has no URL until start()")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- what arrived ----------------------------------------------------------------------

    def stored(self, kind: str, since_id: int = 0, limit: Optional[int] = None) -> List[StoredItem]:
        """Stored items of ``kind`` (events, users, companies, subscriptions, actions) with
        their ids, arrival times and application ids."""
        return self._state.storage.fetch(kind, since_id, limit)

    def events(self, since_id: int = 0) -> List[Dict[str, Any]]:
        """The stored events, in arrival order."""
        return [item.body for item in self.stored("events", since_id)]

    def users(self, since_id: int = 0) -> List[Dict[str, Any]]:
        return [item.body for item in self.stored("users", since_id)]

    def companies(self, since_id: int = 0) -> List[Dict[str, Any]]:
        return [item.body for item in self.stored("companies", since_id)]

    def subscriptions(self, since_id: int = 0) -> List[Dict[str, Any]]:
        return [item.body for item in self.stored("subscriptions", since_id)]

    def actions(self, since_id: int = 0) -> List[Dict[str, Any]]:
        return [item.body for item in self.stored("actions", since_id)]

    def count(self, kind: str) -> int:
        return self._state.storage.count(kind)

    def event_count(self) -> int:
        return self.count("events")

    def wait_for(self, kind: str, n: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """Polls until at least ``n`` items of ``kind`` are stored; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            have = self.count(kind)
            if have >= n:
                return [item.body for item in self.stored(kind)]
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"expected at least {n} {kind} within {timeout} s; {have} arrived"
                )
            time.sleep(_POLL_SECONDS)

    def wait_for_events(self, n: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
        return self.wait_for("events", n, timeout)

    def request_count(self, path_suffix: str = "/v1/events/batch") -> int:
        """Requests received on an endpoint, whatever their outcome (faults, 401s included)."""
        return self._state.requests.count(_endpoint_path(path_suffix))

    def last_request_headers(self, path_suffix: str = "/v1/events/batch") -> Dict[str, str]:
        """The headers of the last request to an endpoint, names in lower case (repeats joined
        with ", "); empty before the first."""
        return self._state.requests.last_headers(_endpoint_path(path_suffix))

    def request_counts(self) -> Dict[str, int]:
        return self._state.requests.snapshot()

    def wait_for_requests(
        self, n: int, path_suffix: str = "/v1/events/batch", timeout: float = 10.0
    ) -> int:
        """Polls until an endpoint has received at least ``n`` requests; returns the count."""
        endpoint_path = _endpoint_path(path_suffix)
        deadline = time.monotonic() + timeout
        while True:
            have = self._state.requests.count(endpoint_path)
            if have >= n:
                return have
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"expected at least {n} requests to {endpoint_path} within {timeout} s; "
                    f"{have} arrived"
                )
            time.sleep(_POLL_SECONDS)

    def reset(self) -> None:
        """Deletes every stored item and zeroes the request counts (ids keep increasing)."""
        self._state.storage.delete_all()
        self._state.requests.reset()

    # -- what it serves --------------------------------------------------------------------

    def set_config(self, config: Dict[str, Any]) -> None:
        self._state.app_config.config.set(config)

    def set_rules(self, rules: List[Any]) -> None:
        self._state.app_config.rules.set(rules)

    @property
    def config(self) -> Dict[str, Any]:
        value: Dict[str, Any] = self._state.app_config.config.value()
        return value

    @property
    def rules(self) -> List[Any]:
        value: List[Any] = self._state.app_config.rules.value()
        return value

    @property
    def etag(self) -> str:
        return self._state.app_config.etag

    # -- faults ----------------------------------------------------------------------------

    @property
    def fault(self) -> Optional[Fault]:
        """The fault in force (None when healthy)."""
        return self._state.faults.current

    def set_fault(self, fault: Optional[Fault]) -> None:
        self._state.faults.set(fault)

    def fail(
        self,
        status: int,
        retry_after: Optional[float] = None,
        count: Optional[int] = None,
        all: bool = False,
    ) -> None:
        """Answers ``status`` (with ``Retry-After`` when given) and stores nothing, for the next
        ``count`` requests (None: until healed)."""
        self.set_fault(Fault("fail", status=status, retry_after=retry_after, count=count, all=all))

    def delay(self, seconds: float, count: Optional[int] = None, all: bool = False) -> None:
        """Waits ``seconds`` before handling each request normally."""
        self.set_fault(Fault("delay", seconds=seconds, count=count, all=all))

    def hang(self, count: Optional[int] = None, all: bool = False) -> None:
        """Reads each request and never answers it; ``heal()`` or ``stop()`` closes them."""
        self.set_fault(Fault("hang", count=count, all=all))

    def drop(self, count: Optional[int] = None, all: bool = False) -> None:
        """Reads each request and closes the connection without an answer."""
        self.set_fault(Fault("drop", count=count, all=all))

    def heal(self) -> None:
        """Back to normal; hung requests are closed unanswered."""
        self.set_fault(None)


def _endpoint_path(path_suffix: str) -> str:
    endpoint = match_endpoint(path_suffix)
    if endpoint is None:
        raise ValueError(f"{path_suffix!r} names no collector endpoint (e.g. '/v1/events/batch')")
    return endpoint.path
