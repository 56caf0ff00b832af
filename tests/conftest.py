"""Shared fixtures."""

from __future__ import annotations

from typing import Iterator

import pytest

from moesif_integrations.collector import Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A fresh local collector on a free loopback port, storing in memory; stopped afterwards."""
    running = Collector(host="127.0.0.1", port=0, db_path=":memory:").start()
    try:
        yield running
    finally:
        running.close()
