"""What the plain-WSGI example sends to Moesif, checked with the moesif_events fixture (the
pytest plugin this package installs). Run: ``pytest examples/wsgi``."""

from __future__ import annotations

from typing import Any

import pytest
import webtest

from moesif_integrations.testing import MoesifEvents


@pytest.fixture
def client(moesif_events: MoesifEvents) -> webtest.TestApp:
    import app  # after moesif_events has set MOESIF_APPLICATION_ID and MOESIF_BASE_URI

    return webtest.TestApp(app.app)


def test_a_password_never_leaves_the_app(client: webtest.TestApp, moesif_events: Any) -> None:
    created = client.post_json(
        "/items", {"name": "gadget", "password": "hunter2"}, headers={"X-Api-Key": "key-alice"}
    )
    assert created.status_int == 201
    client.get("/health")  # left out by the SKIP hook

    event = moesif_events.wait(1)[-1]
    assert len(moesif_events.events) == 1
    assert event.user_id == "alice" and event.company_id == "acme"
    assert event.request.body == {"name": "gadget", "password": "<masked>"}
    assert event.request.api_version == "1.0.0"
    assert moesif_events.all(path="/items", status=201, method="POST") == [event]
