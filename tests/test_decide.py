"""Sampling and governance rules as compiled from the app config and rules documents."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from typing import Any, Dict, List, Optional

import pytest

from moesif_integrations.core.capture.tees import ReplayInput
from moesif_integrations.core.decide.conditions import Facts, Problems, compile_pattern
from moesif_integrations.core.decide.decisions import compile_decisions
from moesif_integrations.core.decide.rules import compile_governance
from moesif_integrations.core.decide.sampling import Sampling, compile_sampling, weight_of
from moesif_integrations.core.logs import LogOnce
from moesif_integrations.core.record import ExchangeRecord


def record(
    path: str = "/items/1",
    method: str = "GET",
    headers: Any = (),
    cgi: bool = False,
    status: int = 200,
    user: Optional[str] = None,
    company: Optional[str] = None,
    ip: str = "10.0.0.1",
) -> ExchangeRecord:
    r = ExchangeRecord(0.0, method, "http", "h", path, "", headers, cgi, ip, None)
    r.status = status
    r.user_id = user
    r.company_id = company
    return r


def problems() -> Problems:
    return Problems("test")


# ------------------------------------------------------------------ patterns


@pytest.mark.parametrize(
    "pattern",
    ["(a+)+$", "(a|aa)*b", "(.*a){12}", r"(\w+\s?)*$", r"(a)\1", "x" * 1001, "(", 5, None],
)
def test_hostile_or_broken_patterns_are_refused(pattern: Any) -> None:
    with pytest.raises(ValueError):
        compile_pattern(pattern)


@pytest.mark.parametrize(
    "pattern", ["^/health", "/items/[0-9]+$", "^(GET|POST)$", "a.*b", "x{2,5}"]
)
def test_ordinary_patterns_compile(pattern: str) -> None:
    assert compile_pattern(pattern).pattern == pattern


def test_an_accepted_pattern_runs_in_bounded_time_on_a_huge_field() -> None:
    pattern = compile_pattern("a.*b.*c.*d")
    rules = _governance([_regex_rule("r", [("request.headers.x-long", "a.*b.*c.*d")])])
    facts = Facts(record(headers=[("X-Long", "a" * 1_000_000)]))
    started = time.perf_counter()
    assert rules.verdict(facts, None, None) is None
    assert time.perf_counter() - started < 1.0
    assert pattern.pattern == "a.*b.*c.*d"


# ------------------------------------------------------------------ sampling


def test_weight_is_round_of_100_over_rate() -> None:
    assert weight_of(100) == 1
    assert weight_of(60) == 2  # the incumbent floors this to 1
    assert weight_of(40) == 2  # and this to 2: round(2.5) is 2
    assert weight_of(10) == 10
    assert weight_of(0.5) == 200
    assert weight_of(150) == 1


def test_rate_order_regex_user_company_default() -> None:
    sampling = compile_sampling(
        {
            "sample_rate": 50,
            "user_sample_rate": {"u1": 20},
            "company_sample_rate": {"c1": 30, "c2": "x"},
            "regex_config": [
                {"conditions": [{"path": "request.route", "value": "^/health"}], "sample_rate": 0},
                {"conditions": [{"path": "response.status", "value": "^5"}], "sample_rate": 100},
                {"conditions": [{"path": "request.nope", "value": "."}], "sample_rate": 1},
            ],
        },
        problems(),
    )
    assert sampling.rate(record("/health/live", user="u1")) == 0
    assert sampling.rate(record("/x", status=503, user="u1")) == 100
    assert sampling.rate(record("/x", user="u1", company="c1")) == 20
    assert sampling.rate(record("/x", company="c1")) == 30
    assert sampling.rate(record("/x", company="c2")) == 50
    assert sampling.rate(record("/x")) == 50


def test_early_rate_only_when_the_route_decides() -> None:
    sampling = compile_sampling(
        {
            "sample_rate": 50,
            "regex_config": [
                {"conditions": [{"path": "request.route", "value": "^/health"}], "sample_rate": 0},
                {
                    "conditions": [
                        {"path": "request.verb", "value": "^POST$"},
                        {"path": "response.status", "value": "^5"},
                    ],
                    "sample_rate": 100,
                },
            ],
        },
        problems(),
    )
    assert sampling.early_rate("GET", "/health", None) == 0
    assert sampling.early_rate("POST", "/x", None) is None  # the status decides
    assert sampling.early_rate("GET", "/x", None) == 50
    with_users = compile_sampling({"sample_rate": 50, "user_sample_rate": {"u": 1}}, problems())
    assert with_users.early_rate("GET", "/x", None) is None


def test_no_config_keeps_everything() -> None:
    sampling = compile_sampling({}, problems())
    assert sampling.keeps_all and not sampling.decides_early


def test_kept_share_at_10_percent_lies_within_a_binomial_bound() -> None:
    draws = random.Random(20261205).random
    sampling = Sampling(10, draw=draws)
    n, p = 100_000, 0.10
    kept = sum(sampling.keeps(sampling.rate(record())) for _ in range(n))
    # Five standard deviations: a correct sampler fails this about once in 3.5 million runs.
    bound = 5 * math.sqrt(n * p * (1 - p))
    assert abs(kept - n * p) < bound, kept


def test_bad_sampling_parts_are_left_out_and_noted() -> None:
    noted = problems()
    sampling = compile_sampling(
        {
            "sample_rate": "ten",
            "user_sample_rate": [1, 2],
            "regex_config": [{"conditions": [{"path": "request.route", "value": "(a+)+"}]}],
        },
        noted,
    )
    assert sampling.keeps_all
    assert len(noted.notes) == 3


# ------------------------------------------------------------------ rules


def _regex_rule(rule_id: str, conditions: List[Any], **extra: Any) -> Dict[str, Any]:
    rule: Dict[str, Any] = {
        "_id": rule_id,
        "type": "regex",
        "regex_config": [{"conditions": [{"path": p, "value": v} for p, v in conditions]}],
    }
    rule.update(extra)
    return rule


def _governance(rules: List[Any], config: Optional[Dict[str, Any]] = None) -> Any:
    return compile_governance(rules, config or {}, problems())


def test_a_blocking_regex_rule_answers_with_its_status_headers_and_json_body() -> None:
    rules = _governance(
        [
            _regex_rule(
                "r1",
                [("request.route", "^/pro"), ("request.verb", "GET")],
                block=True,
                response={"status": 402, "headers": {"X-Plan": "free"}, "body": {"error": "pay"}},
            )
        ]
    )
    verdict = rules.verdict(Facts(record("/pro/x")), None, None)
    block = verdict.block
    assert block.rule_id == "r1" and block.status == 402
    assert block.headers == [("X-Plan", "free"), ("Content-Type", "application/json")]
    assert json.loads(block.body) == {"error": "pay"}
    assert rules.verdict(Facts(record("/free")), None, None) is None


def test_order_regex_company_user_headers_merge_later_wins() -> None:
    rules = _governance(
        [
            {
                "_id": "u",
                "type": "user",
                "block": True,
                "response": {
                    "status": 429,
                    "headers": {"X-A": "user", "X-U": "{{0}}"},
                    "body": {"by": "user {{0}}"},
                },
            },
            {
                "_id": "c",
                "type": "company",
                "block": True,
                "response": {
                    "status": 403,
                    "headers": {"X-A": "company", "X-C": "1"},
                    "body": {"by": "company"},
                },
            },
            _regex_rule(
                "r", [("request.route", ".")], response={"headers": {"X-A": "regex", "X-R": "1"}}
            ),
        ],
        {
            "user_rules": {"alice": [{"rules": "u", "values": {"0": "gold"}}]},
            "company_rules": {"acme": [{"rules": "c", "values": {}}]},
        },
    )
    verdict = rules.verdict(Facts(record()), "alice", "acme")
    block = verdict.block
    assert block.rule_id == "u" and block.status == 429
    assert dict(block.headers) == {
        "X-A": "user",
        "X-R": "1",
        "X-C": "1",
        "X-U": "gold",
        "Content-Type": "application/json",
    }
    assert json.loads(block.body) == {"by": "user gold"}
    # Bob is not listed: only the company rule blocks.
    verdict = rules.verdict(Facts(record()), "bob", "acme")
    assert verdict.block.rule_id == "c" and dict(verdict.block.headers)["X-A"] == "company"
    # Nobody listed: only the regex rule's headers.
    verdict = rules.verdict(Facts(record()), "bob", "other")
    assert verdict.block is None and verdict.headers == [("X-A", "regex"), ("X-R", "1")]


def test_applied_to_not_matching_and_unidentified() -> None:
    rules = _governance(
        [
            {
                "_id": "n",
                "type": "user",
                "applied_to": "not_matching",
                "block": True,
                "response": {"status": 402, "body": "{{plan}}"},
            },
        ],
        {"user_rules": {"payer": [{"rules": "n", "values": {"plan": "paid"}}]}},
    )
    assert rules.verdict(Facts(record()), "payer", None) is None
    verdict = rules.verdict(Facts(record()), "freeloader", None)
    assert verdict.block.status == 402 and json.loads(verdict.block.body) == "UNKNOWN"
    assert rules.verdict(Facts(record()), None, None) is None
    anyone = _governance(
        [
            {
                "_id": "a",
                "type": "user",
                "applied_to_unidentified": True,
                "block": True,
                "response": {"status": 401},
            }
        ]
    )
    assert anyone.verdict(Facts(record()), None, None).block.status == 401
    assert anyone.verdict(Facts(record()), "listed-nowhere", None) is None


def test_header_and_body_conditions() -> None:
    rules = _governance(
        [
            _regex_rule(
                "h", [("request.headers.X-Api-Key", "^bad")], block=True, response={"status": 403}
            ),
            _regex_rule(
                "b", [("request.body.order.plan", "^free$")], block=True, response={"status": 402}
            ),
        ]
    )
    assert rules.needs_body
    cgi = record(headers=[("HTTP_X_API_KEY", "bad-key")], cgi=True)
    assert rules.verdict(Facts(cgi), None, None).block.rule_id == "h"
    asgi = record(headers=[(b"x-api-key", b"bad-key")])
    assert rules.verdict(Facts(asgi), None, None).block.rule_id == "h"
    body = b'{"order": {"plan": "free"}}'
    assert rules.verdict(Facts(record(), body), None, None).block.rule_id == "b"
    assert rules.verdict(Facts(record(), b"not json"), None, None) is None


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        {"type": "regex"},
        {"_id": "x", "type": "nope"},
        {"_id": "x", "type": "regex", "block": True, "response": {"status": 499.5}},
        {"_id": "x", "type": "regex", "block": True, "response": {"status": 700}},
        {"_id": "x", "type": "regex", "block": "yes", "response": {"status": 403}},
        {"_id": "x", "type": "regex", "response": {"headers": {"X": "a\r\nSet-Cookie: x"}}},
        {"_id": "x", "type": "regex", "response": {"headers": {"Bad Name": "a"}}},
        {"_id": "x", "type": "regex", "response": {"headers": ["X", "a"]}},
        {"_id": "x", "type": "regex", "response": [1]},
        {"_id": "x", "type": "regex", "regex_config": {"conditions": []}},
        {
            "_id": "x",
            "type": "regex",
            "regex_config": [{"conditions": [{"path": "request.route", "value": "(a*)*"}]}],
        },
        {"_id": "x", "type": "regex", "applied_to": "everyone"},
    ],
)
def test_malformed_rules_are_skipped(bad: Any) -> None:
    noted = problems()
    good = {"_id": "ok", "type": "regex", "block": True, "response": {"status": 418}}
    rules = compile_governance([bad, good], {}, noted)
    assert [rule.rule_id for rule in rules.regex] == ["ok"]
    assert len(noted.notes) == 1


def test_a_rule_the_config_names_but_the_rules_lack_is_noted_and_harmless() -> None:
    noted = problems()
    rules = compile_governance(
        [], {"user_rules": {"u": [{"rules": "ghost", "values": {}}], "v": "x"}}, noted
    )
    assert not rules.governs and len(noted.notes) == 2


@pytest.mark.parametrize("rule_id", [[], {}, 7, None])
def test_a_rule_id_that_is_not_text_is_noted_and_harmless(rule_id: Any) -> None:
    noted = problems()
    rules = compile_governance([], {"user_rules": {"u": [{"rules": rule_id}]}}, noted)
    assert not rules.governs and len(noted.notes) == 1


def test_a_document_with_problems_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    log = LogOnce()
    caplog.set_level(logging.WARNING, logger="moesif_integrations")
    for _ in range(3):
        decisions = compile_decisions({"sample_rate": -1}, [{"_id": 1}], "etag-1", log)
    assert decisions.sampling.keeps_all and not decisions.governance.governs
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # one for the config, one for the rules


def test_documents_of_the_wrong_shape_mean_no_rules() -> None:
    for config, rules in (([], {}), ("x", None), (None, [[]]), ({"user_rules": []}, 5)):
        decisions = compile_decisions(config, rules, None, LogOnce())
        assert decisions.sampling.keeps_all and not decisions.governance.governs


# ------------------------------------------------------------------ the read-ahead stream


def test_replay_input_gives_the_body_back_whole() -> None:
    import io

    body = b"line one\nline two\nthe rest"
    for reader in (
        lambda s: s.read(),
        lambda s: s.read(-1),
        lambda s: b"".join(iter(lambda: s.read(3), b"")),
        lambda s: b"".join(s.readlines()),
        lambda s: b"".join(list(s)),
        lambda s: s.read(len(body)),
    ):
        for ahead in (0, 1, 5, 9, 12, len(body)):
            source = io.BytesIO(body)
            prefix = source.read(ahead)
            assert reader(ReplayInput(prefix, source)) == body, (ahead, reader)


def test_many_regex_rules_share_one_route_search_and_still_match_alike() -> None:
    rules = [
        _regex_rule(
            f"r{n}", [("request.route", f"^/never/{n}/")], block=True, response={"status": 403}
        )
        for n in range(50)
    ]
    rules.append(
        _regex_rule(
            "post-items",
            [("request.verb", "^POST$"), ("request.route", "^/items$|^/orders$")],
            block=True,
            response={"status": 405},
        )
    )
    governance = _governance(rules)
    assert governance._regex_route_search is not None
    assert governance.verdict(Facts(record("/items/1")), None, None) is None
    assert governance.verdict(Facts(record("/items", "GET")), None, None) is None
    assert governance.verdict(Facts(record("/orders", "POST")), None, None).block.status == 405
    assert governance.verdict(Facts(record("/never/7/x")), None, None).block.rule_id == "r7"
    # A rule without conditions applies everywhere: no shared search can rule it out.
    everywhere = _governance(
        [*rules, {"_id": "all", "type": "regex", "response": {"headers": {"X-A": "1"}}}]
    )
    assert everywhere._regex_route_search is None
    assert everywhere.verdict(Facts(record("/x")), None, None).headers == [("X-A", "1")]
