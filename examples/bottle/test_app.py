"""What the Bottle example sends to Moesif, checked with the moesif_events fixture (the pytest
plugin this package installs). Run: ``pytest examples/bottle``."""

from __future__ import annotations

from typing import Any

import pytest
import webtest

from moesif_integrations.testing import MoesifEvents


@pytest.fixture
def client(moesif_events: MoesifEvents) -> webtest.TestApp:
    import app  # after moesif_events has set MOESIF_APPLICATION_ID and MOESIF_BASE_URI

    return webtest.TestApp(app.app)


def test_unauthenticated_calls_are_sent_without_a_user(
    client: webtest.TestApp, moesif_events: Any
) -> None:
    client.get("/items", status=401)
    client.post_json("/items", {"name": "bolt", "qty": 3}, headers={"X-Api-Key": "key-grace"})
    client.get("/health")  # left out by its route config

    first, second = moesif_events.wait(2)
    assert first.response.status == 401 and first.user_id is None
    assert second.response.status == 201 and second.user_id == "grace"
    assert second.request.api_version == "1.0"
    assert moesif_events.all(user_id="grace") == [second]
    assert moesif_events.all(path="/health") == []
