"""A pytest plugin for your own tests: assert on what your app would send to Moesif.

Installed with the package (entry point ``pytest11``), it gives every test the fixture
``moesif_events``: a local collector on a free loopback port, in the test run's own process
(one for the session, emptied before each test), with ``MOESIF_APPLICATION_ID`` and
``MOESIF_BASE_URI`` set for apps that read the environment and ``moesif_events.settings`` for
apps built in the test. Integrations read their settings when the app is built: build it in the
test, or import the app's module in a fixture that uses ``moesif_events``::

    def test_create_item(moesif_events):
        app = create_app({"MOESIF_BASE_URI": moesif_events.url})  # or env / settings
        app.test_client().post("/items", json={"name": "gear"}, headers={"X-Api-Key": "k"})

        event = moesif_events.wait(1)[-1]
        assert event.response.status == 201
        assert event.user_id == "u-1"
        assert event.request.headers["X-Api-Key"].startswith("<masked:")
        assert moesif_events.all(path="/items", status=201)

``wait(n)`` flushes every live integration of the process, then waits (a few seconds at most)
for ``n`` events to be stored: no sleeps in the test, no network. An API call is recorded when
its response has been read to the end or closed, as under a real server: read the test client's
answer (``reply.json``) or use it in a ``with`` block before waiting. Events read as objects:
``event.request.verb``, ``event.response.body["id"]``; header names in any case.
"""

from __future__ import annotations

import time
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
)
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from moesif_integrations.collector import Collector

__all__ = ["MoesifEvents", "Recorded", "moesif_collector", "moesif_events"]

APPLICATION_ID = "moesif-events-fixture"
_POLL_SECONDS = 0.01
_MISSING = object()


class Recorded(Mapping[str, Any]):
    """A JSON object with attribute access (``event.response.status``); nested objects are
    Recorded too. Keys are looked up as given, then case-insensitively (header names)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    @staticmethod
    def wrap(value: Any) -> Any:
        if isinstance(value, Mapping) and not isinstance(value, Recorded):
            return Recorded(value)
        if isinstance(value, list):
            return [Recorded.wrap(item) for item in value]
        return value

    def _lookup(self, key: str) -> Any:
        if key in self._data:
            return self._data[key]
        folded = key.lower()
        for name, value in self._data.items():
            if isinstance(name, str) and name.lower() == folded:
                return value
        return _MISSING

    def __getitem__(self, key: str) -> Any:
        value = self._lookup(key)
        if value is _MISSING:
            raise KeyError(key)
        return Recorded.wrap(value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = self._lookup(name)
        if value is _MISSING:
            raise AttributeError(f"no field {name!r}; fields: {', '.join(map(str, self._data))}")
        return Recorded.wrap(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Recorded):
            return dict(self._data) == dict(other._data)
        if isinstance(other, Mapping):
            return dict(self._data) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Recorded({dict(self._data)!r})"

    @property
    def raw(self) -> Mapping[str, Any]:
        """The plain JSON object."""
        return self._data

    @property
    def path(self) -> str:
        """For an event: the path of ``request.uri`` (no host, no query)."""
        request = self._data.get("request")
        uri = request.get("uri") if isinstance(request, Mapping) else None
        return urlsplit(str(uri or "")).path


class MoesifEvents:
    """What the integrations of the process sent to the test's collector."""

    def __init__(self, collector: Collector, application_id: str = APPLICATION_ID) -> None:
        self.collector = collector
        self.application_id = application_id

    @property
    def url(self) -> str:
        """The collector's URL: the integration's ``BASE_URI``."""
        return self.collector.url

    @property
    def settings(self) -> Dict[str, Any]:
        """Settings that point an integration at this collector (add your own to a copy)."""
        return {"APPLICATION_ID": self.application_id, "BASE_URI": self.url}

    # -- waiting ---------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Delivers what every live integration of the process holds; True when all went."""
        from moesif_integrations.core.lifecycle import flush_all

        return flush_all(timeout)

    def wait(self, n: int = 1, timeout: float = 5.0, kind: str = "events") -> List[Recorded]:
        """Flushes, then waits until at least ``n`` items of ``kind`` are stored; returns them
        all, oldest first. AssertionError after ``timeout`` seconds, with what did arrive."""
        deadline = time.monotonic() + timeout
        while True:
            self.flush(max(0.0, deadline - time.monotonic()))
            if self.collector.count(kind) >= n:
                return self._items(kind)
            if time.monotonic() >= deadline:
                arrived = self._items(kind)
                described = ", ".join(_describe(kind, item) for item in arrived) or "none"
                raise AssertionError(
                    f"expected at least {n} {kind} within {timeout} s; "
                    f"{len(arrived)} arrived: {described} (an API call is recorded once its "
                    "response was read to the end or closed: read the test client's answer, "
                    "or use it in a with block)"
                )
            # The app may still be finishing a response (its event is queued when it closes).
            time.sleep(_POLL_SECONDS)

    # -- reading ---------------------------------------------------------------------------

    def _items(self, kind: str) -> List[Recorded]:
        return [Recorded(item.body) for item in self.collector.stored(kind)]

    @property
    def events(self) -> List[Recorded]:
        """Every event delivered so far (after flushing what is queued), oldest first."""
        self.flush()
        return self._items("events")

    @property
    def last(self) -> Recorded:
        """The newest event (after flushing what is queued); AssertionError when none."""
        events = self.events
        if not events:
            raise AssertionError("no event reached the collector")
        return events[-1]

    def all(
        self,
        path: Optional[str] = None,
        status: Optional[int] = None,
        method: Optional[str] = None,
        user_id: Optional[str] = None,
        company_id: Optional[str] = None,
        **fields: Any,
    ) -> List[Recorded]:
        """The events that match every condition given: ``path`` (of the URI, no query),
        ``status``, ``method``, ``user_id``, ``company_id`` and any top-level field."""
        matched = []
        for event in self.events:
            if path is not None and event.path != path:
                continue
            if status is not None and event.raw.get("response", {}).get("status") != status:
                continue
            if method is not None and str(event.raw["request"].get("verb")).upper() != (
                method.upper()
            ):
                continue
            if user_id is not None and event.raw.get("user_id") != user_id:
                continue
            if company_id is not None and event.raw.get("company_id") != company_id:
                continue
            if any(event.raw.get(name) != value for name, value in fields.items()):
                continue
            matched.append(event)
        return matched

    @property
    def users(self) -> List[Recorded]:
        self.flush()
        return self._items("users")

    @property
    def companies(self) -> List[Recorded]:
        self.flush()
        return self._items("companies")

    @property
    def actions(self) -> List[Recorded]:
        self.flush()
        return self._items("actions")

    def clear(self) -> None:
        """Forgets what was stored (flushing first, so nothing queued lands afterwards)."""
        self.flush()
        self.collector.reset()

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[Recorded]:
        return iter(self.events)


def _describe(kind: str, item: Recorded) -> str:
    if kind != "events":
        return repr(dict(item.raw))
    request = item.raw.get("request") or {}
    response = item.raw.get("response") or {}
    return f"{request.get('verb')} {item.path} {response.get('status')}"


@pytest.fixture(scope="session")
def moesif_collector() -> Iterator[Collector]:
    """The session's local collector behind ``moesif_events`` (one for the whole run, so that
    an app configured once, at import, keeps reaching it from test to test)."""
    from moesif_integrations.collector import Collector
    from moesif_integrations.core.lifecycle import flush_all

    collector = Collector(host="127.0.0.1", port=0).start()
    try:
        yield collector
    finally:
        # What the integrations still hold goes now, not to a stopped collector at exit.
        flush_all(2.0)
        collector.close()


@pytest.fixture
def moesif_events(
    moesif_collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MoesifEvents]:
    """What the app sent to Moesif during this test, at a local collector in this process;
    MOESIF_APPLICATION_ID and MOESIF_BASE_URI point at it. Build the app in the test or in a
    fixture that uses this one: integrations read their settings when the app is built."""
    events = MoesifEvents(moesif_collector)
    # Events of earlier tests, still queued in long-lived apps, must not count in this one.
    events.clear()
    monkeypatch.setenv("MOESIF_APPLICATION_ID", events.application_id)
    monkeypatch.setenv("MOESIF_BASE_URI", moesif_collector.url)
    yield events
