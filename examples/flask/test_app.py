"""What the Flask example sends to Moesif, checked with the moesif_events fixture (the pytest
plugin this package installs). Run: ``pytest examples/flask``."""

from __future__ import annotations

from typing import Any

import flask
import pytest

from moesif_integrations.testing import MoesifEvents


@pytest.fixture
def app(moesif_events: MoesifEvents) -> flask.Flask:
    from app import create_app  # after moesif_events has set MOESIF_BASE_URI

    return create_app({"TESTING": True})


def test_a_created_item_is_sent_with_its_user(app: flask.Flask, moesif_events: Any) -> None:
    client = app.test_client()
    reply = client.post("/items", json={"name": "bolt", "qty": 3}, headers={"X-Api-Key": "key-ada"})
    assert reply.status_code == 201 and reply.json["name"] == "bolt"

    event = moesif_events.wait(1)[-1]
    assert event.response.status == 201
    assert event.user_id == "ada" and event.company_id == "analytical-engines"
    assert event.request.body == {"name": "bolt", "qty": 3}
    assert event.request.headers["X-Api-Key"].startswith("<masked:")

    assert client.get("/items/99", headers={"X-Api-Key": "key-grace"}).json
    moesif_events.wait(2)
    assert moesif_events.last.response.status == 404
    assert [e.user_id for e in moesif_events.all(path="/items")] == ["ada"]
