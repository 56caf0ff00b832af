"""What the events say matches what happened on the wire and what the hooks meant: no body for
responses that carry none, metadata JSON cannot hold left out alone, identification hooks'
answers recorded as text only when they are text (or an int or UUID), the client's address
from the one header the trusted proxies write."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Dict, List

import pytest
from wsgi_client import call

from moesif_integrations import ConfigurationError, MoesifMiddleware, Settings
from moesif_integrations.core.capture import exchange as exchange_module
from moesif_integrations.core.wire import identity as identity_module

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


@pytest.mark.parametrize(
    ("setting", "recorded"),
    [(None, "198.51.100.9"), ("X-Forwarded-For", "198.51.100.9"), ("Forwarded", "192.0.2.44")],
)
def test_the_client_address_comes_from_the_one_trusted_proxy_header(
    middlewares: Callable[..., MoesifMiddleware], collector: Any, setting: Any, recorded: str
) -> None:
    """Behind a proxy that appends to X-Forwarded-For and passes the client's Forwarded through
    (or the other way round), the client cannot choose the address recorded."""
    options = {} if setting is None else {"TRUSTED_PROXY_HEADER": setting}
    middleware = middlewares(answering("200 OK"), APP_ID, **options)
    headers = {"Forwarded": "for=192.0.2.44", "X-Forwarded-For": "198.51.100.9"}
    call(middleware, "GET", "/", headers=headers, REMOTE_ADDR="10.0.0.2")
    (event,) = delivered(middleware, collector, 1)
    assert event["request"]["ip_address"] == recorded


def test_a_proxy_writing_only_the_other_header_is_pointed_out_once(
    middlewares: Callable[..., MoesifMiddleware],
    collector: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Who relied on Forwarded being read first (before TRUSTED_PROXY_HEADER) learns which
    setting reads it; the header is still not believed."""
    identity_module._problems.reset()
    middleware = middlewares(answering("200 OK"), APP_ID)
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        for _ in range(3):
            call(
                middleware, "GET", "/", headers={"Forwarded": "for=6.6.6.6"}, REMOTE_ADDR="10.0.0.2"
            )
        events = delivered(middleware, collector, 3)
    assert {event["request"]["ip_address"] for event in events} == {"10.0.0.2"}
    hints = [r.getMessage() for r in caplog.records if "TRUSTED_PROXY_HEADER" in r.getMessage()]
    assert len(hints) == 1 and "set TRUSTED_PROXY_HEADER to Forwarded" in hints[0], hints


def test_the_trusted_proxy_header_setting_is_one_header_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = {"APPLICATION_ID": APP_ID}
    assert Settings.load({**base, "TRUSTED_PROXY_HEADER": " X-Real-IP "}).trusted_proxy_header == (
        "x-real-ip"
    )
    monkeypatch.setenv("MOESIF_TRUSTED_PROXY_HEADER", "Forwarded")
    assert Settings.load(base).trusted_proxy_header == "forwarded"
    for bad in ("X-Forwarded-For, Forwarded", "", 42):
        with pytest.raises(ConfigurationError, match="TRUSTED_PROXY_HEADER"):
            Settings.load({**base, "TRUSTED_PROXY_HEADER": bad})
