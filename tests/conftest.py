"""Shared fixtures."""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

from moesif_integrations import MoesifMiddleware
from moesif_integrations.collector import Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A fresh local collector on a free loopback port, storing in memory; stopped afterwards."""
    running = Collector(host="127.0.0.1", port=0, db_path=":memory:").start()
    try:
        yield running
    finally:
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


@pytest.fixture
def middlewares(collector: Collector) -> Iterator[Callable[..., MoesifMiddleware]]:
    """``make(app, app_id, **settings)``: a MoesifMiddleware around ``app`` delivering to the
    collector (unless BASE_URI says otherwise) with a 0.05 s batch timeout; every one made is
    shut down afterwards."""
    made: List[MoesifMiddleware] = []

    def make(app: Any, app_id: str, **settings: Any) -> MoesifMiddleware:
        options = {
            "APPLICATION_ID": app_id,
            "BASE_URI": collector.url,
            "EVENT_BATCH_TIMEOUT": 0.05,
        }
        options.update(settings)
        middleware = MoesifMiddleware(app, options)
        made.append(middleware)
        return middleware

    yield make
    for middleware in made:
        middleware.shutdown(timeout=1)
