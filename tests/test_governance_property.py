"""Random app config and rules documents, and random requests, through every adapter: the app's
own answer comes back unchanged unless a valid rule blocked the request or added headers, and the
capture never fails."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, Set

import pytest
from harness import HarnessBase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_conformance import ADAPTERS, load_harness
from test_governance import pipeline_of, user_from

from moesif_integrations.collector import Collector
from moesif_integrations.core.decide.decisions import NO_DECISIONS, compile_decisions
from moesif_integrations.core.logs import LogOnce

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
garbage = st.none() | st.integers() | st.text(max_size=6) | st.lists(st.integers(), max_size=2)
paths = st.sampled_from(
    [
        "request.verb",
        "request.route",
        "request.ip_address",
        "request.headers.X-K",
        "request.body.a",
        "request.body.a.b",
        "response.status",
        "request.nope",
        "",
    ]
)
patterns = st.sampled_from(
    [".", "^/items", "^/health$", "GET", "POST", "^1", "(a+)+", "(", "x{2", "\\", "^$"]
) | st.text(max_size=6)
conditions = st.fixed_dictionaries({"path": paths, "value": patterns}) | garbage
regex_config = (
    st.lists(
        st.fixed_dictionaries({"conditions": st.lists(conditions, max_size=3)}) | garbage,
        max_size=3,
    )
    | garbage
)
header_names = st.sampled_from(["X-Rule", "X-Other", "Bad Name", "X-Plan", "Content-Type"])
header_values = st.sampled_from(["v", "{{0}}", "{{plan}}", "a\r\nInjected: 1", ""]) | garbage
responses = st.fixed_dictionaries(
    {},
    optional={
        "status": st.integers(0, 1000) | garbage,
        "headers": st.dictionaries(header_names, header_values, max_size=3) | garbage,
        "body": json_values,
    },
)
rule_ids = st.sampled_from(["r1", "r2", "r3"]) | garbage
rules = st.fixed_dictionaries(
    {"_id": rule_ids, "type": st.sampled_from(["regex", "user", "company", "other"]) | garbage},
    optional={
        "block": st.booleans() | garbage,
        "applied_to": st.sampled_from(["matching", "not_matching", "x"]),
        "applied_to_unidentified": st.booleans() | garbage,
        "regex_config": regex_config,
        "response": responses | garbage,
    },
)
rules_documents = st.lists(rules | garbage, max_size=5) | garbage
entity_entries = st.lists(
    st.fixed_dictionaries(
        {"rules": rule_ids, "values": st.dictionaries(st.sampled_from(["0", "plan"]), json_values)}
    )
    | garbage,
    max_size=2,
)
configs = (
    st.fixed_dictionaries(
        {},
        optional={
            "sample_rate": st.integers(-10, 150) | garbage,
            "user_rules": st.dictionaries(st.sampled_from(["alice", "bob"]), entity_entries)
            | garbage,
            "company_rules": st.dictionaries(st.just("acme"), entity_entries) | garbage,
            "regex_config": regex_config,
        },
    )
    | garbage
)
requests = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["item", "health", "post", "upload"]),
        "headers": st.dictionaries(
            st.sampled_from(["X-K", "X-User"]), st.sampled_from(["alice", "bob", "xx", "1"])
        ),
        "a": json_values,
    }
)
IGNORED_HEADERS = {"x-moesif-transaction-id", "date", "server", "content-length"}


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    running = Collector(host="127.0.0.1", port=0, db_path=":memory:").start()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module", params=ADAPTERS)
def harness(request: Any, collector: Collector) -> Iterator[HarnessBase]:
    made: HarnessBase = load_harness(request.param)(
        {
            "APPLICATION_ID": "property-app",
            "BASE_URI": collector.url,
            "IDENTIFY_USER": user_from,
            "EVENT_BATCH_TIMEOUT": 0.05,
        }
    )
    app_config = pipeline_of(made).app_config
    app_config.started = True  # the documents come from the test, not the collector
    yield made
    made.close()


def _send(harness: HarnessBase, request: Dict[str, Any]) -> Any:
    kind = request["kind"]
    headers = dict(request["headers"])
    if kind == "item":
        return harness.request("GET", "/items/7", headers=headers)
    if kind == "health":
        return harness.request("GET", "/health", headers=headers)
    body = json.dumps({"a": request["a"]}).encode()
    headers["Content-Type"] = "application/json"
    return harness.request("POST", "/items" if kind == "post" else "/upload", body, headers)


def _declared_header_names(rules_document: Any) -> Set[str]:
    names: Set[str] = set()
    for rule in rules_document if isinstance(rules_document, list) else ():
        response = rule.get("response") if isinstance(rule, dict) else None
        headers = response.get("headers") if isinstance(response, dict) else None
        if isinstance(headers, dict):
            names.update(str(name).lower() for name in headers)
    return names


def _blocking_statuses(rules_document: Any) -> Set[Any]:
    statuses: Set[Any] = set()
    for rule in rules_document if isinstance(rules_document, list) else ():
        if isinstance(rule, dict) and rule.get("block") is True:
            response = rule.get("response")
            if isinstance(response, dict):
                statuses.add(response.get("status"))
    return statuses


def _headers(reply: Any) -> Dict[str, str]:
    return {k: v for k, v in reply.headers.items() if k not in IGNORED_HEADERS}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=configs, rules_document=rules_documents, request=requests)
def test_random_documents_never_change_the_apps_answer_unless_a_valid_rule_says_so(
    harness: HarnessBase, config: Any, rules_document: Any, request: Dict[str, Any]
) -> None:
    pipeline = pipeline_of(harness)
    app_config = pipeline.app_config
    app_config.decisions = NO_DECISIONS
    baseline = _send(harness, request)
    app_config.decisions = compile_decisions(config, rules_document, "random", LogOnce())
    try:
        reply = _send(harness, request)
    finally:
        app_config.decisions = NO_DECISIONS
    assert pipeline.counters.get("capture_errors") == 0
    added = set(_headers(reply)) - set(_headers(baseline))
    if reply.status == baseline.status and reply.body == baseline.body:
        assert added <= _declared_header_names(rules_document)
        for name, value in _headers(baseline).items():
            if name not in _declared_header_names(rules_document):
                assert reply.headers.get(name) == value
        return
    # Blocked: by a rule that asked for it, with its status and a JSON answer.
    assert reply.status in _blocking_statuses(rules_document)
    assert reply.headers["content-type"] == "application/json"
    assert added - {"content-type"} <= _declared_header_names(rules_document)
    if reply.body:
        json.loads(reply.body)
    assert "\r" not in "".join(reply.headers.values())


def test_a_block_reaches_the_client_through_each_adapter(harness: HarnessBase) -> None:
    """The property's own check that a blocked answer can be told from the app's."""
    pipeline = pipeline_of(harness)
    rule = {"_id": "r1", "type": "regex", "block": True, "response": {"status": 409}}
    pipeline.app_config.decisions = compile_decisions({}, [rule], "fixed", LogOnce())
    try:
        reply = harness.request("GET", "/health")
    finally:
        pipeline.app_config.decisions = NO_DECISIONS
    assert reply.status == 409 and reply.body == b""
    assert reply.headers["content-type"] == "application/json"
