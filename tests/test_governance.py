"""Sampling and governance rules through every adapter, against the local collector, with the
config and rules changed while the app runs."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from harness import HarnessBase
from test_conformance import ADAPTERS, load_harness
from wsgi_client import call

from moesif_integrations import MoesifMiddleware
from moesif_integrations.collector import Collector

BLOCK_FREE_PLAN = {
    "_id": "block-stream",
    "type": "regex",
    "block": True,
    "regex_config": [{"conditions": [{"path": "request.route", "value": "^/stream"}]}],
    "response": {
        "status": 402,
        "headers": {"X-Reason": "quota", "X-Plan": "{{plan}}"},
        "body": {"error": "upgrade", "items": [1, 2]},
    },
}
TAG_HEALTH = {
    "_id": "tag-health",
    "type": "regex",
    "regex_config": [{"conditions": [{"path": "request.route", "value": "^/health$"}]}],
    "response": {"headers": {"X-Governed": "yes"}},
}


def header_hook(name: str) -> Callable[..., Optional[str]]:
    """A hook for every adapter that answers the request header ``name``, read from an environ
    or a Falcon request."""
    environ_key = "HTTP_" + name.upper().replace("-", "_")

    def hook(*args: Any) -> Optional[str]:
        for arg in args:
            if isinstance(arg, dict) and "REQUEST_METHOD" in arg:
                return arg.get(environ_key)
            get_header = getattr(arg, "get_header", None)
            if get_header is not None:
                return get_header(name)  # type: ignore[no-any-return]
        return None

    return hook


# IDENTIFY_USER and IDENTIFY_COMPANY: the X-User and X-Company headers.
user_from = header_hook("X-User")
company_from = header_hook("X-Company")


def counting(hook: Callable[..., Any], calls: List[Any]) -> Callable[..., Any]:
    """``hook``, noting the arguments of each call in ``calls``."""

    def counted(*args: Any) -> Any:
        calls.append(args)
        return hook(*args)

    return counted


MakeHarness = Callable[..., HarnessBase]


@pytest.fixture(params=ADAPTERS)
def make(request: Any, collector: Collector) -> Iterator[MakeHarness]:
    made: List[HarnessBase] = []
    name = request.param

    def factory(**settings: Any) -> HarnessBase:
        harness = _harness(name, collector, **settings)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()


def _harness(name: str, collector: Collector, **settings: Any) -> HarnessBase:
    options = {
        "APPLICATION_ID": "governance-app",
        "BASE_URI": collector.url,
        "EVENT_BATCH_TIMEOUT": 0.05,
        "RETRY_BACKOFF": 0.05,
        **settings,
    }
    harness: HarnessBase = load_harness(name)(options)
    return harness


def pipeline_of(harness: HarnessBase) -> Any:
    integration = harness.integration
    if not hasattr(integration, "pipeline"):  # Flask's extension: the app's own integration
        integration = harness.app.extensions["moesif"]  # type: ignore[attr-defined]
    return integration.pipeline


def loaded(harness: HarnessBase, collector: Collector, timeout: float = 10) -> None:
    """Starts the fetching as a first request would, and waits for the collector's documents."""
    app_config = pipeline_of(harness).app_config
    app_config.current()
    deadline = time.monotonic() + timeout
    while app_config.decisions.etag != collector.etag:
        assert time.monotonic() < deadline, "the app config never arrived"
        time.sleep(0.01)


def delivered(harness: HarnessBase, collector: Collector, count: int) -> List[Dict[str, Any]]:
    assert harness.integration.flush(timeout=10), harness.integration.stats()
    events = collector.wait_for_events(count, timeout=5)
    assert len(events) == count, [e["request"]["uri"] for e in events]
    return events


def answer(reply: Any) -> Tuple[int, Dict[str, str], Any]:
    headers = {
        name: value
        for name, value in reply.headers.items()
        if name in ("x-reason", "x-plan", "content-type", "x-governed")
    }
    return reply.status, headers, json.loads(reply.body) if reply.body else None


# ------------------------------------------------------------------ every adapter


def test_a_block_answers_for_the_view_and_the_event_says_so(
    make: MakeHarness, collector: Collector
) -> None:
    collector.set_rules([BLOCK_FREE_PLAN])
    harness = make()
    loaded(harness, collector)
    reply = harness.request("GET", "/stream")
    assert answer(reply) == (
        402,
        {"x-reason": "quota", "x-plan": "UNKNOWN", "content-type": "application/json"},
        {"error": "upgrade", "items": [1, 2]},
    )
    assert harness.produced == []  # the view never ran
    assert "x-moesif-transaction-id" in reply.headers
    (event,) = delivered(harness, collector, 1)
    assert event["blocked_by"] == "block-stream"
    assert event["response"]["status"] == 402
    assert event["response"]["body"] == {"error": "upgrade", "items": [1, 2]}
    assert event["transaction_id"] == reply.headers["x-moesif-transaction-id"]


def test_headers_of_a_matching_rule_are_added_to_the_apps_answer(
    make: MakeHarness, collector: Collector
) -> None:
    collector.set_rules([TAG_HEALTH])
    harness = make()
    loaded(harness, collector)
    reply = harness.request("GET", "/health")
    assert reply.status == 200 and reply.body == b"ok"
    assert reply.headers["x-governed"] == "yes"
    other = harness.request("GET", "/items/1")
    assert "x-governed" not in other.headers
    first, second = delivered(harness, collector, 2)
    headers = {name.lower(): value for name, value in first["response"]["headers"].items()}
    assert headers["x-governed"] == "yes"
    assert first["blocked_by"] is None and second["blocked_by"] is None


def test_a_rule_on_the_body_reads_it_and_the_app_still_gets_it_whole(
    make: MakeHarness, collector: Collector
) -> None:
    collector.set_rules(
        [
            {
                "_id": "free-orders",
                "type": "regex",
                "block": True,
                "regex_config": [
                    {"conditions": [{"path": "request.body.order.plan", "value": "^free$"}]}
                ],
                "response": {"status": 403, "body": {"error": "free plan"}},
            }
        ]
    )
    harness = make()
    loaded(harness, collector)
    json_headers = {"Content-Type": "application/json"}
    blocked = harness.request(
        "POST", "/items", body=b'{"order": {"plan": "free"}}', headers=json_headers
    )
    assert blocked.status == 403 and json.loads(blocked.body) == {"error": "free plan"}
    paid = {"order": {"plan": "paid"}, "pad": "x" * 5000}
    served = harness.request("POST", "/items", body=json.dumps(paid).encode(), headers=json_headers)
    assert served.status == 201 and json.loads(served.body) == {"received": paid}
    events = delivered(harness, collector, 2)
    assert [e["blocked_by"] for e in events] == ["free-orders", None]
    assert events[1]["request"]["body"] == paid


def test_user_rules_identify_before_the_app_and_substitute_values(
    make: MakeHarness, collector: Collector
) -> None:
    calls: List[Any] = []
    identify = counting(user_from, calls)
    collector.set_config(
        {"user_rules": {"alice": [{"rules": "over-quota", "values": {"plan": "gold"}}]}}
    )
    collector.set_rules(
        [
            {
                "_id": "over-quota",
                "type": "user",
                "block": True,
                "response": {
                    "status": 429,
                    "headers": {"X-Plan": "{{plan}}"},
                    "body": {"plan": "{{plan}}", "missing": "{{nope}}"},
                },
            },
            {
                "_id": "strangers",
                "type": "user",
                "applied_to_unidentified": True,
                "response": {"headers": {"X-Reason": "who are you"}},
            },
        ]
    )
    harness = make(IDENTIFY_USER=identify)
    loaded(harness, collector)
    blocked = harness.request("GET", "/items/1", headers={"X-User": "alice"})
    assert answer(blocked) == (
        429,
        {"x-plan": "gold", "content-type": "application/json"},
        {"plan": "gold", "missing": "UNKNOWN"},
    )
    assert len(calls) == 1  # before the app, its answer kept for the event
    bob = harness.request("GET", "/items/2", headers={"X-User": "bob"})
    assert bob.status == 200 and "x-reason" not in bob.headers
    assert len(calls) == 2
    nobody = harness.request("GET", "/items/3")
    assert nobody.status == 200 and nobody.headers["x-reason"] == "who are you"
    assert len(calls) == 4  # it answered nothing before the app: asked again after
    events = delivered(harness, collector, 3)
    assert [(e["user_id"], e["blocked_by"]) for e in events] == [
        ("alice", "over-quota"),
        ("bob", None),
        (None, None),
    ]


def test_company_rules_apply_before_user_rules_and_a_later_block_wins(
    make: MakeHarness, collector: Collector
) -> None:
    collector.set_config(
        {
            "company_rules": {"acme": [{"rules": "unpaid", "values": {"0": "acme"}}]},
            "user_rules": {"alice": [{"rules": "vip", "values": {}}]},
        }
    )
    collector.set_rules(
        [
            {
                "_id": "unpaid",
                "type": "company",
                "block": True,
                "response": {
                    "status": 402,
                    "headers": {"X-Company": "{{0}}", "X-Reason": "unpaid"},
                    "body": {"company": "{{0}}"},
                },
            },
            {
                "_id": "vip",
                "type": "user",
                "applied_to": "not_matching",
                "block": True,
                "response": {"status": 429, "headers": {"X-Reason": "not vip"}, "body": {}},
            },
        ]
    )
    harness = make(IDENTIFY_USER=user_from, IDENTIFY_COMPANY=company_from)
    loaded(harness, collector)
    vip = harness.request("GET", "/items/1", headers={"X-User": "alice", "X-Company": "acme"})
    assert answer(vip) == (
        402,
        {"x-reason": "unpaid", "content-type": "application/json"},
        {"company": "acme"},
    )
    assert vip.headers["x-company"] == "acme"
    other = harness.request("GET", "/items/2", headers={"X-User": "bob", "X-Company": "acme"})
    assert answer(other) == (
        429,
        {"x-reason": "not vip", "content-type": "application/json"},
        {},
    )
    assert other.headers["x-company"] == "acme"  # the company rule's header, merged
    free = harness.request("GET", "/items/3", headers={"X-User": "alice", "X-Company": "other"})
    assert free.status == 200
    events = delivered(harness, collector, 3)
    assert [(e["company_id"], e["blocked_by"]) for e in events] == [
        ("acme", "unpaid"),
        ("acme", "vip"),
        ("other", None),
    ]


def test_without_rules_the_hooks_are_called_once_after_the_app(
    make: MakeHarness, collector: Collector
) -> None:
    calls: List[Any] = []
    identify = counting(user_from, calls)
    collector.set_config({"sample_rate": 100, "user_sample_rate": {"alice": 50}})
    harness = make(IDENTIFY_USER=identify)
    loaded(harness, collector)
    for _ in range(3):
        harness.request("GET", "/items/1", headers={"X-User": "bob"})
    assert len(calls) == 3


def test_a_sampled_out_route_costs_no_hook_and_sends_nothing(
    make: MakeHarness, collector: Collector
) -> None:
    skip_calls: List[Any] = []
    collector.set_config(
        {
            "sample_rate": 100,
            "regex_config": [
                {"conditions": [{"path": "request.route", "value": "^/health"}], "sample_rate": 0},
                {"conditions": [{"path": "request.route", "value": "^/items/"}], "sample_rate": 25},
            ],
        }
    )
    harness = make(SKIP=lambda *args: skip_calls.append(args) and False)
    loaded(harness, collector)
    for _ in range(5):
        assert harness.request("GET", "/health").body == b"ok"
    assert skip_calls == []
    assert harness.integration.stats()["sampled_out"] == 5
    kept = 0
    for number in range(40):
        if harness.request("GET", f"/items/{number}").status == 200:
            kept += 1
    assert kept == 40  # sampling never changes the app's answer
    assert harness.integration.flush(timeout=10)
    stats = harness.integration.stats()
    events = collector.events()
    assert stats["sampled_out"] == 5 + 40 - len(events)
    assert 0 < len(events) < 40
    assert {e["weight"] for e in events} == {4}
    assert all("/items/" in e["request"]["uri"] for e in events)


def test_a_user_sample_rate_is_decided_at_the_end_with_its_weight(
    make: MakeHarness, collector: Collector
) -> None:
    collector.set_config({"sample_rate": 100, "user_sample_rate": {"alice": 100, "bob": 0}})
    harness = make(IDENTIFY_USER=user_from)
    loaded(harness, collector)
    harness.request("GET", "/items/1", headers={"X-User": "bob"})
    harness.request("GET", "/items/2", headers={"X-User": "alice"})
    (event,) = delivered(harness, collector, 1)
    assert event["user_id"] == "alice" and event["weight"] == 1
    assert harness.integration.stats()["sampled_out"] == 1


def test_changed_rules_apply_after_the_events_response_carries_the_new_etag(
    make: MakeHarness, collector: Collector
) -> None:
    harness = make()
    loaded(harness, collector)
    assert harness.request("GET", "/health").status == 200
    collector.set_rules([{**TAG_HEALTH, "block": True, "response": {"status": 503}}])
    fetches = pipeline_of(harness).app_config.fetches
    assert harness.request("GET", "/items/1").status == 200  # its event brings the new ETag
    assert harness.integration.flush(timeout=10)
    loaded(harness, collector)
    assert pipeline_of(harness).app_config.fetches == fetches + 1
    assert harness.request("GET", "/health").status == 503
    # And back.
    collector.set_rules([])
    harness.request("GET", "/items/2")
    assert harness.integration.flush(timeout=10)
    loaded(harness, collector)
    assert harness.request("GET", "/health").status == 200


# ------------------------------------------------------------------ all six alike


def test_the_same_block_is_answered_identically_by_all_six_adapters(
    collector: Collector,
) -> None:
    collector.set_config({"user_rules": {"alice": [{"rules": "u", "values": {"plan": "free"}}]}})
    collector.set_rules(
        [
            TAG_HEALTH,
            {
                "_id": "u",
                "type": "user",
                "block": True,
                "response": {
                    "status": 451,
                    "headers": {"X-Plan": "{{plan}}", "X-Reason": "legal"},
                    "body": {"plan": "{{plan}}", "n": 1.5, "ok": False},
                },
            },
        ]
    )
    answers = {}
    for name in ADAPTERS:
        try:
            harness = _harness(name, collector, IDENTIFY_USER=user_from)
        except pytest.skip.Exception:
            continue
        try:
            loaded(harness, collector)
            reply = harness.request("GET", "/items/9", headers={"X-User": "alice"})
            answers[name] = (
                reply.status,
                {
                    k: v
                    for k, v in reply.headers.items()
                    if k.startswith("x-") and k != "x-moesif-transaction-id"
                },
                reply.headers.get("content-type"),
                reply.body,
            )
        finally:
            harness.close()
    assert len(answers) >= 2
    expected = (
        451,
        {"x-plan": "free", "x-reason": "legal"},
        "application/json",
        b'{"n":1.5,"ok":false,"plan":"free"}',  # as the collector serves it: keys sorted
    )
    assert answers == dict.fromkeys(answers, expected)


# ------------------------------------------------------------------ the collector misbehaves


def _app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fine"]


def _middleware(collector: Collector, **settings: Any) -> MoesifMiddleware:
    from harness import collector_settings, shut_down_after_test

    options = collector_settings(collector.url, "governance-app", RETRY_BACKOFF=0.05, **settings)
    return shut_down_after_test(MoesifMiddleware(_app, options), timeout=1)  # type: ignore[no-any-return]


def test_nothing_is_fetched_before_the_first_request(collector: Collector) -> None:
    middleware = _middleware(collector)
    time.sleep(0.2)
    assert collector.request_count("/v1/config") == 0
    call(middleware, "GET", "/")
    collector.wait_for_requests(1, "/v1/config")
    collector.wait_for_requests(1, "/v1/rules")


@pytest.mark.parametrize("fault", ["fail", "hang"])
def test_a_failing_or_hanging_config_leaves_the_app_at_full_rate(
    collector: Collector, fault: str
) -> None:
    collector.set_config({"sample_rate": 0})
    if fault == "fail":
        collector.fail(500, all=True)
    else:
        collector.hang(all=True)
    middleware = _middleware(collector, READ_TIMEOUT=0.3)
    started = time.monotonic()
    for _ in range(5):
        assert call(middleware, "GET", "/").body == b"fine"
    assert time.monotonic() - started < 1.0  # the fetch never holds a request
    collector.wait_for_requests(1, "/v1/config")
    assert middleware.pipeline is not None
    app_config = middleware.pipeline.app_config
    assert app_config.decisions.etag is None
    assert middleware.stats()["sampled_out"] == 0
    time.sleep(0.5)  # past READ_TIMEOUT: a hung fetch has failed by now
    collector.heal()
    deadline = time.monotonic() + 10
    while app_config.decisions.etag != collector.etag:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert app_config.failures >= 1
    call(middleware, "GET", "/")
    assert middleware.stats()["sampled_out"] == 1


def test_a_document_over_the_size_cap_is_refused(collector: Collector) -> None:
    collector.set_config({"sample_rate": 0, "pad": "x" * 1_100_000})
    middleware = _middleware(collector)
    call(middleware, "GET", "/")
    collector.wait_for_requests(2, "/v1/config")
    assert middleware.pipeline is not None
    assert middleware.pipeline.app_config.decisions.etag is None
    call(middleware, "GET", "/")
    assert middleware.stats()["sampled_out"] == 0


def test_decisions_stay_in_the_apps_process_with_a_delivery_process(
    collector: Collector,
) -> None:
    collector.set_rules([{**TAG_HEALTH, "block": True, "response": {"status": 418}}])
    middleware = _middleware(collector, DELIVERY_PROCESS=True)
    call(middleware, "GET", "/")
    deadline = time.monotonic() + 10
    assert middleware.pipeline is not None
    while middleware.pipeline.app_config.decisions.etag != collector.etag:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert call(middleware, "GET", "/health").status.startswith("418")
    assert middleware.flush(timeout=10)
    events = collector.wait_for_events(2)
    assert [e["blocked_by"] for e in events] == [None, "tag-health"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_worker_fetches_its_own(collector: Collector) -> None:
    middleware = _middleware(collector)
    call(middleware, "GET", "/")
    collector.wait_for_requests(1, "/v1/config")
    assert middleware.pipeline is not None
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            # This process's copy of the collector sees nothing: the worker watches itself.
            app_config = middleware.pipeline.app_config
            inherited = app_config.completed
            call(middleware, "GET", "/")
            deadline = time.monotonic() + 5
            while app_config.completed == inherited:
                if time.monotonic() > deadline:
                    raise TimeoutError
                time.sleep(0.01)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert collector.wait_for_requests(2, "/v1/config") == 2


# ------------------------------------------------------------------ the local collector


def test_the_collector_serves_a_sample_rate_given_on_its_command_line() -> None:
    import subprocess
    import sys
    import urllib.request

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moesif_integrations.collector",
            "--port",
            "0",
            "--sample-rate",
            "10",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split("listening on ")[1].split()[0]
        request = urllib.request.Request(
            url + "/v1/config", headers={"X-Moesif-Application-Id": "x"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5) as response:
            config = json.loads(response.read())
        assert config["sample_rate"] == 10 and config["regex_config"] == []
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("rate", ["101", "-1", "ten"])
def test_the_collector_refuses_a_sample_rate_outside_0_to_100(rate: str) -> None:
    from moesif_integrations.collector.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--sample-rate", rate])
    assert exited.value.code == 2


def test_the_collector_takes_a_config_file_or_a_sample_rate_not_both() -> None:
    from moesif_integrations.collector.__main__ import main

    assert main(["--sample-rate", "5", "--config", "config.json"]) == 2
