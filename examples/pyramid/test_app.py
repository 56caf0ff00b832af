"""What the Pyramid example sends to Moesif, checked with the moesif_events fixture (the pytest
plugin this package installs). Run: ``pytest examples/pyramid``."""

from __future__ import annotations

from typing import Any

import pytest
import webtest

from moesif_integrations.testing import MoesifEvents


@pytest.fixture
def client(moesif_events: MoesifEvents) -> webtest.TestApp:
    from app import main  # after moesif_events has set MOESIF_BASE_URI

    return webtest.TestApp(main())


def test_a_note_is_sent_with_its_author_and_secrets_masked(
    client: webtest.TestApp, moesif_events: Any
) -> None:
    client.post_json(
        "/notes",
        {"text": "hello", "secret": "s3cr3t"},
        headers={"Authorization": "Bearer key-ada"},
    )

    event = moesif_events.wait(1)[-1]
    assert event.response.status == 201
    assert event.user_id == "ada" and event.company_id == "analytical-engines"
    assert event.request.body == {"text": "hello", "secret": "<masked>"}
    # The Authorization header keeps its scheme; the key itself is a fingerprint.
    assert event.request.headers["authorization"].startswith("Bearer <masked:")
