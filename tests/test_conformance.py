"""The conformance suite: the same behaviour from every adapter, against the local collector."""

from __future__ import annotations

import base64
import importlib
import json
import uuid
from typing import Any, Callable, Dict, Iterator, List

import pytest
from harness import BIG_SIZE, STREAM_CHUNKS, HarnessBase

ADAPTERS = ["wsgi", "flask", "bottle", "pyramid", "falcon", "falcon_asgi"]
# What a harness needs that an environment may leave out (the framework matrix installs one
# framework at a time, with the test client it is driven by).
FRAMEWORK_OF = {
    "flask": {"flask", "werkzeug"},
    "bottle": {"bottle", "webtest"},
    "pyramid": {"pyramid", "webtest"},
    "falcon": {"falcon"},
    "falcon_asgi": {"falcon"},
}


def load_harness(name: str) -> Any:
    try:
        return importlib.import_module(f"harness_{name}").HARNESS
    except ModuleNotFoundError as missing:
        # Only a framework that this environment does not install is a reason to skip.
        if (missing.name or "").partition(".")[0] in FRAMEWORK_OF.get(name, set()):
            pytest.skip(f"{missing.name} is not installed in this environment")
        raise


MakeHarness = Callable[..., HarnessBase]


@pytest.fixture(params=ADAPTERS)
def make(request: Any, collector: Any) -> Iterator[MakeHarness]:
    harness_class = load_harness(request.param)
    made: List[HarnessBase] = []

    def factory(**settings: Any) -> HarnessBase:
        options = {
            "APPLICATION_ID": "conformance-app",
            "BASE_URI": collector.url,
            "EVENT_BATCH_TIMEOUT": 0.05,
        }
        options.update(settings)
        harness = harness_class(options)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()


def delivered(harness: HarnessBase, collector: Any, count: int = 1) -> List[Dict[str, Any]]:
    assert harness.integration.flush(timeout=10), harness.integration.stats()
    events = collector.wait_for_events(count, timeout=5)
    assert len(events) == count, [e["request"]["uri"] for e in events]
    return events


def test_json_get(make: MakeHarness, collector: Any) -> None:
    harness = make()
    reply = harness.request("GET", "/items/42", query="verbose=1")
    assert reply.status == 200 and json.loads(reply.body) == {"id": "42"}
    (event,) = delivered(harness, collector)
    assert event["request"]["verb"] == "GET"
    assert event["request"]["uri"].endswith("/items/42?verbose=1")
    assert event["request"]["uri"].startswith("http")
    assert event["response"]["status"] == 200
    assert event["response"]["body"] == {"id": "42"}
    assert event["response"]["transfer_encoding"] == "json"
    assert event["direction"] == "Incoming"
    tid = reply.headers["x-moesif-transaction-id"]
    assert uuid.UUID(tid) and event["transaction_id"] == tid


def test_json_post(make: MakeHarness, collector: Any) -> None:
    harness = make()
    reply = harness.request(
        "POST",
        "/items",
        body=b'{"name": "widget", "qty": 3}',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 201
    assert json.loads(reply.body) == {"received": {"name": "widget", "qty": 3}}
    (event,) = delivered(harness, collector)
    assert event["request"]["body"] == {"name": "widget", "qty": 3}
    assert event["response"]["body"] == {"received": {"name": "widget", "qty": 3}}
    assert event["response"]["status"] == 201


def test_form_post(make: MakeHarness, collector: Any) -> None:
    harness = make()
    reply = harness.request(
        "POST",
        "/form",
        body=b"name=ada&x=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 200 and reply.body == b"hello ada"
    (event,) = delivered(harness, collector)
    assert base64.b64decode(event["request"]["body"]) == b"name=ada&x=1"
    assert base64.b64decode(event["response"]["body"]) == b"hello ada"


def test_binary_upload(make: MakeHarness, collector: Any) -> None:
    harness = make()
    payload = bytes(range(256)) * 8
    reply = harness.request(
        "POST", "/upload", body=payload, headers={"Content-Type": "application/octet-stream"}
    )
    assert json.loads(reply.body) == {"size": len(payload)}
    (event,) = delivered(harness, collector)
    assert event["request"]["transfer_encoding"] == "base64"
    assert base64.b64decode(event["request"]["body"]) == payload


def test_body_over_the_limit(make: MakeHarness, collector: Any) -> None:
    harness = make(RESPONSE_MAX_BODY_SIZE=1000)
    reply = harness.request("GET", "/big")
    assert len(reply.body) == BIG_SIZE
    (event,) = delivered(harness, collector)
    marker = event["response"]["body"]
    assert marker["moesif_body_truncated"] is True
    assert marker["size"] == BIG_SIZE and marker["limit"] == 1000


def test_streamed_response_passes_through(make: MakeHarness, collector: Any) -> None:
    harness = make()
    probe = harness.stream_probe()
    assert probe.first_chunk.startswith(STREAM_CHUNKS[0])
    assert probe.produced_when_first_arrived < len(STREAM_CHUNKS)
    assert probe.body == b"".join(STREAM_CHUNKS)
    (event,) = delivered(harness, collector)
    assert base64.b64decode(event["response"]["body"]) == b"".join(STREAM_CHUNKS)
    assert event["response"]["time"] >= event["request"]["time"]


def test_not_found(make: MakeHarness, collector: Any) -> None:
    harness = make()
    assert harness.request("GET", "/no/such/route").status == 404
    (event,) = delivered(harness, collector)
    assert event["response"]["status"] == 404


def test_exception_in_the_view(make: MakeHarness, collector: Any) -> None:
    harness = make()
    assert harness.request("GET", "/error").status == 500
    (event,) = delivered(harness, collector)
    assert event["response"]["status"] == 500
    assert event["request"]["uri"].endswith("/error")


def test_hooks(make: MakeHarness, collector: Any) -> None:
    calls: Dict[str, int] = {}

    def hook(name: str, value: Any) -> Callable[..., Any]:
        def called(*args: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            return value

        return called

    harness = make(
        IDENTIFY_USER=hook("user", "user-7"),
        IDENTIFY_COMPANY=hook("company", "co-9"),
        GET_METADATA=hook("metadata", {"plan": "gold"}),
        GET_SESSION_TOKEN=hook("session", "sess-3"),
    )
    harness.request("GET", "/items/1")
    (event,) = delivered(harness, collector)
    assert calls == {"user": 1, "company": 1, "metadata": 1, "session": 1}
    assert event["user_id"] == "user-7" and event["company_id"] == "co-9"
    assert event["metadata"] == {"plan": "gold"} and event["session_token"] == "sess-3"


def test_hook_that_raises_never_breaks_the_request(make: MakeHarness, collector: Any) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("hook bug")

    harness = make(IDENTIFY_USER=broken, GET_METADATA=broken)
    assert harness.request("GET", "/items/1").status == 200
    (event,) = delivered(harness, collector)
    assert event["user_id"] is None
    assert harness.integration.stats()["hook_errors"] == 2


def test_skip(make: MakeHarness, collector: Any) -> None:
    holder: Dict[str, HarnessBase] = {}
    harness = make(SKIP=lambda *args: holder["h"].path_of(args) == "/health")
    holder["h"] = harness
    assert harness.request("GET", "/health").body == b"ok"
    harness.request("GET", "/items/1")
    (event,) = delivered(harness, collector)
    assert event["request"]["uri"].endswith("/items/1")
    assert harness.integration.stats()["skipped"] == 1


def test_masking_and_identified_user(make: MakeHarness, collector: Any) -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"sub": "jwt-user"}).encode()).rstrip(b"=")
    token = "eyJhbGciOiJIUzI1NiJ9." + claims.decode() + ".sig"
    harness = make(REQUEST_BODY_MASKS=["password"], RESPONSE_BODY_MASKS=["password"])
    harness.request(
        "POST",
        "/items",
        body=b'{"login": "a", "password": "hunter2"}',
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "X-Api-Key": "k-123",
        },
    )
    (event,) = delivered(harness, collector)
    assert event["user_id"] == "jwt-user"
    text = json.dumps(event)
    assert token not in text
    assert "k-123" not in text
    assert "hunter2" not in text
    assert event["request"]["body"]["login"] == "a"


def test_disabled_is_a_pass_through(make: MakeHarness, collector: Any) -> None:
    harness = make(ENABLED=False)
    reply = harness.request("GET", "/items/5")
    assert reply.status == 200 and "x-moesif-transaction-id" not in reply.headers
    assert harness.integration.flush(timeout=1)
    assert collector.event_count() == 0
