"""What the Falcon examples (WSGI and ASGI) send to Moesif, checked with the moesif_events
fixture (the pytest plugin this package installs). Run: ``pytest examples/falcon``."""

from __future__ import annotations

import importlib
from typing import Any

import falcon.testing
import pytest

from moesif_integrations.testing import MoesifEvents


@pytest.fixture(params=["app", "asgi_app"])
def client(
    request: pytest.FixtureRequest, moesif_events: MoesifEvents
) -> falcon.testing.TestClient:
    # Imported after moesif_events has set MOESIF_APPLICATION_ID and MOESIF_BASE_URI.
    module = importlib.import_module(request.param)
    return falcon.testing.TestClient(module.app)


def test_a_new_book_is_sent_with_its_route(
    client: falcon.testing.TestClient, moesif_events: Any
) -> None:
    created = client.simulate_post(
        "/books", json={"title": "Sketch of the Engine"}, headers={"X-Api-Key": "key-ada"}
    )
    assert created.status_code == 201
    client.simulate_get("/books/99", headers={"X-Api-Key": "key-ada"})

    posted, missing = moesif_events.wait(2)
    assert posted.response.body["title"] == "Sketch of the Engine"
    assert posted.user_id == "ada" and posted.metadata == {"route": "/books"}
    assert missing.response.status == 404
    assert missing.metadata["route"] == "/books/{book_id:int}"
