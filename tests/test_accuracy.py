"""What the events say matches what happened on the wire and what the hooks meant: no body for
responses that carry none, metadata JSON cannot hold left out alone, identification hooks'
answers recorded as text only when they are text (or an int or UUID)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Dict, List

import pytest
from wsgi_client import call

from moesif_integrations import MoesifMiddleware
from moesif_integrations.core.capture import exchange as exchange_module

APP_ID = "accuracy-app-id"


def answering(status: str) -> Callable[..., List[bytes]]:
    """An app that answers ``status`` with a body whatever the method (servers drop it)."""

    def app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        start_response(status, [("Content-Type", "text/plain")])
        return [b"a body no client will see"]

    return app


def delivered(middleware: MoesifMiddleware, collector: Any, count: int) -> List[Dict[str, Any]]:
    assert middleware.flush(timeout=10), middleware.stats()
    return collector.wait_for_events(count, timeout=5)


@pytest.mark.parametrize(
    ("method", "status"),
    [("HEAD", "200 OK"), ("GET", "204 No Content"), ("GET", "304 Not Modified")],
)
def test_responses_without_a_body_on_the_wire_record_none(
    middlewares: Callable[..., MoesifMiddleware], collector: Any, method: str, status: str
) -> None:
    middleware = middlewares(answering(status), APP_ID)
    call(middleware, method, "/")
    call(middleware, "GET", "/")  # the same app, a GET answered 200 or not: body or none
    first, second = sorted(delivered(middleware, collector, 2), key=lambda e: e["request"]["time"])
    assert first["response"]["status"] == int(status[:3])
    assert "body" not in first["response"] and "transfer_encoding" not in first["response"]
    # A GET answered 200 keeps its body; one answered 204 or 304 has none either.
    assert ("body" in second["response"]) is (method == "HEAD")


class _Opaque:
    pass


@pytest.mark.parametrize("metadata", [["a", "list"], {"when": _Opaque()}, {"self": {1: {2}}}])
def test_metadata_json_cannot_hold_is_left_out_alone(
    middlewares: Callable[..., MoesifMiddleware], collector: Any, metadata: Any
) -> None:
    middleware = middlewares(
        answering("200 OK"), APP_ID, GET_METADATA=lambda app, environ: metadata
    )
    call(middleware, "GET", "/kept")
    (event,) = delivered(middleware, collector, 1)
    assert event["request"]["uri"].endswith("/kept")
    assert event.get("metadata") in (None, {"self": {"1": [2]}})
    assert middleware.stats()["dropped_unserializable"] == 0


@pytest.mark.parametrize(
    ("answer", "recorded"),
    [
        ("alice", "alice"),
        (42, "42"),
        (uuid.UUID(int=7), str(uuid.UUID(int=7))),
        ({"id": "alice"}, None),
        (b"alice", None),
        (True, None),
        (["alice"], None),
    ],
)
def test_identification_answers_are_text_or_refused(
    middlewares: Callable[..., MoesifMiddleware],
    collector: Any,
    caplog: pytest.LogCaptureFixture,
    answer: Any,
    recorded: Any,
) -> None:
    middleware = middlewares(
        answering("200 OK"),
        APP_ID,
        IDENTIFY_USER=lambda app, environ, headers=None: answer,
        IDENTIFY_COMPANY=lambda app, environ, headers=None: answer,
    )
    exchange_module._identity_problems.reset()  # warnings are once a minute per process
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        call(middleware, "GET", "/")
        call(middleware, "GET", "/")
    events = delivered(middleware, collector, 2)
    for event in events:
        assert event.get("user_id") == recorded and event.get("company_id") == recorded
    warnings = [r.getMessage() for r in caplog.records if "returned a" in r.getMessage()]
    if recorded is None:
        # One line per hook, not per request; never the value itself.
        assert len(warnings) == 2, warnings
        assert all(repr(answer) not in line for line in warnings)
    else:
        assert warnings == []
