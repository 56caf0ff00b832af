"""Shared fixtures."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator

import pytest
from harness import collector_settings, shut_down_after_test, shut_down_test_integrations

from moesif_integrations import MoesifMiddleware
from moesif_integrations.collector import Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A fresh local collector on a free loopback port, storing in memory; stopped afterwards."""
    running = Collector(host="127.0.0.1", port=0, db_path=":memory:").start()
    try:
        yield running
    finally:
        # The test's integrations first, while the collector still answers their last flush.
        shut_down_test_integrations()
        running.close()


@pytest.fixture(params=["orjson", "stdlib"])
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with orjson (when installed) and with the standard library's json, which
    the package falls back to where orjson has no wheel: the package's one switch is set."""
    from moesif_integrations.core import json_backend as backend

    if request.param == "orjson":
        if backend.orjson is None:
            pytest.skip("orjson is not installed")
        return "orjson"
    monkeypatch.setattr(backend, "orjson", None)
    return "stdlib"


@pytest.fixture(autouse=True)
def shut_down_integrations() -> Iterator[None]:
    """Shuts down, after each test, every integration it handed to ``shut_down_after_test``
    (the ``collector`` fixture does it first where a test has one)."""
    yield
    shut_down_test_integrations()


@pytest.fixture
def base(request: pytest.FixtureRequest, collector: Collector) -> Dict[str, Any]:
    """Settings an adapter's tests start from: the test module's ``APP_ID``, delivering to the
    collector with a short batch timeout (``harness.collector_settings``)."""
    return collector_settings(collector.url, request.module.APP_ID)


@pytest.fixture
def middlewares(collector: Collector) -> Callable[..., MoesifMiddleware]:
    """``make(app, app_id, **settings)``: a MoesifMiddleware around ``app`` delivering to the
    collector (unless BASE_URI says otherwise) with a 0.05 s batch timeout; every one made is
    shut down after the test."""

    def make(app: Any, app_id: str, **settings: Any) -> MoesifMiddleware:
        middleware = MoesifMiddleware(app, collector_settings(collector.url, app_id, **settings))
        return shut_down_after_test(middleware, timeout=1)

    return make
