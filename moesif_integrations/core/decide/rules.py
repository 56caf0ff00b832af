"""Governance rules, compiled once per document, and what they answer for one request.

docs/protocol.md, "Governance rules": matching rules apply in the order regex, company, user;
each adds its response headers (later ones win for a header of the same name); a ``block`` rule
answers instead of the app with its status, the merged headers, ``Content-Type:
application/json`` and the JSON of its body (the last blocking rule wins). ``{{name}}`` in
headers and body is the ``values[name]`` of the config's ``user_rules`` / ``company_rules``
entry that made the rule apply, else ``UNKNOWN``.

Rules are data from the network: a rule that is malformed in any way is left out and noted in
the document's ``Problems``; nothing here raises on the request path.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple

from .conditions import (
    MAX_MATCHED_CHARS,
    REQUEST_FIELDS,
    Facts,
    Group,
    Problems,
    any_group_matches,
    any_route_search,
    as_object,
    compile_groups,
)
from .governance import Block

UNKNOWN = "UNKNOWN"
RULE_TYPES = ("regex", "company", "user")
_PLACEHOLDER = re.compile(r"\{\{([^{}]{1,200})\}\}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,200}\Z")
_BAD_VALUE_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MAX_HEADERS = 50
JSON_CONTENT_TYPE = ("Content-Type", "application/json")
Values = Dict[str, str]
NO_VALUES: Values = {}
# An entity (user or company id) -> the values its config entry gives the rule.
Entities = Dict[str, Values]


class Rule:
    """One governance rule, compiled."""

    __slots__ = (
        "rule_id",
        "kind",
        "block",
        "matching",
        "unidentified",
        "groups",
        "status",
        "headers",
        "body",
        "body_bytes",
        "entities",
    )

    def __init__(
        self,
        rule_id: str,
        kind: str,
        block: bool,
        matching: bool,
        unidentified: bool,
        groups: Tuple[Group, ...],
        status: int,
        headers: Tuple[Tuple[str, str], ...],
        body: Any,
    ) -> None:
        self.rule_id = rule_id
        self.kind = kind
        self.block = block
        # applied_to: "matching" (the entities the config lists) or "not_matching".
        self.matching = matching
        # applied_to_unidentified: whether a request without user (company) gets the rule.
        self.unidentified = unidentified
        self.groups = groups
        self.status = status
        self.headers = headers
        self.body = body
        # The body's JSON when it has no placeholder: serialised once.
        self.body_bytes: Optional[bytes] = None
        if not _has_placeholder(body):
            self.body_bytes = _body_json(body)
        self.entities: Entities = {}

    @property
    def needs_body(self) -> bool:
        return any(c.needs_body for group in self.groups for c in group)

    def values_for(self, entity: Optional[str], facts: Facts) -> Optional[Values]:
        """The values a user or company rule substitutes when it applies to this request (the
        user or company ``entity``); None when it does not apply."""
        if entity is None:
            if not self.unidentified:
                return None
            values = NO_VALUES
        else:
            listed = self.entities.get(entity)
            if self.matching:
                if listed is None:
                    return None
                values = listed
            else:
                if listed is not None:
                    return None
                values = NO_VALUES
        if self.groups and not any_group_matches(self.groups, facts):
            return None
        return values

    def body_for(self, values: Values) -> bytes:
        if self.body_bytes is not None:
            return self.body_bytes
        return _body_json(_substitute_all(self.body, values))


class Verdict:
    """What the rules answer for one request: a Block, or headers added to the app's answer."""

    __slots__ = ("block", "headers")

    def __init__(self, block: Optional[Block], headers: List[Tuple[str, str]]) -> None:
        self.block = block
        self.headers = headers


class Governance:
    """The rules of one document pair, in the order they apply."""

    def __init__(self, rules: List[Rule]) -> None:
        self.regex = [rule for rule in rules if rule.kind == "regex"]
        self.company = [rule for rule in rules if rule.kind == "company"]
        self.user = [rule for rule in rules if rule.kind == "user"]
        self.governs = bool(rules)
        # One search of the route that must find something before any regex rule can apply;
        # None: every regex rule is tried.
        self._regex_route_search = any_route_search(
            [group for rule in self.regex for group in rule.groups]
            + ([()] if any(not rule.groups for rule in self.regex) else [])
        )
        # Whether a rule needs the user or company before the app runs.
        self.needs_identity = bool(self.company or self.user)
        # Whether a rule reads the request body before the app runs.
        self.needs_body = any(rule.needs_body for rule in rules)

    def verdict(
        self, facts: Facts, user_id: Optional[str], company_id: Optional[str]
    ) -> Optional[Verdict]:
        """The answer of the rules for one request; None when no rule applies."""
        applied: List[Tuple[Rule, Values]] = []
        route_search = self._regex_route_search
        route = facts.record.path
        if route_search is None or route_search(route[:MAX_MATCHED_CHARS]) is not None:
            for rule in self.regex:
                groups = rule.groups
                if not groups or any_group_matches(groups, facts):
                    applied.append((rule, NO_VALUES))
        for rules, entity in ((self.company, company_id), (self.user, user_id)):
            for rule in rules:
                values = rule.values_for(entity, facts)
                if values is not None:
                    applied.append((rule, values))
        if not applied:
            return None
        merged: Dict[str, Tuple[str, str]] = {}
        blocking: Optional[Tuple[Rule, Values]] = None
        for rule, values in applied:
            for name, template in rule.headers:
                merged[name.lower()] = (name, _substitute(template, values))
            if rule.block:
                blocking = (rule, values)
        headers = list(merged.values())
        if blocking is None:
            return Verdict(None, headers)
        rule, values = blocking
        merged.pop("content-type", None)
        block_headers = [*merged.values(), JSON_CONTENT_TYPE]
        return Verdict(Block(rule.rule_id, rule.status, block_headers, rule.body_for(values)), [])


NO_RULES = Governance([])


def compile_governance(
    rules_document: Any, config: Dict[str, Any], problems: Problems
) -> Governance:
    """The rules of a rules document, with the entities the config lists for each; a bad rule
    (or config entry) is noted in ``problems`` and left out."""
    if not isinstance(rules_document, list):
        problems.add("the rules document is not a list")
        return NO_RULES
    rules: Dict[str, Rule] = {}
    for data in rules_document:
        try:
            rule = _compile_rule(data)
        except (ValueError, RecursionError) as exc:
            rule_id = data.get("_id") if isinstance(data, dict) else None
            problems.add(f"rule {str(rule_id)[:80]!r} skipped: {exc}")
            continue
        if rule.rule_id in rules:
            problems.add(f"rule {rule.rule_id[:80]!r} appears twice; the first is kept")
            continue
        rules[rule.rule_id] = rule
    _attach_entities(rules, config.get("user_rules"), "user", problems)
    _attach_entities(rules, config.get("company_rules"), "company", problems)
    return Governance(list(rules.values()))


def _compile_rule(data: Any) -> Rule:
    if not isinstance(data, dict):
        raise ValueError("not an object")
    rule_id = data.get("_id")
    if not isinstance(rule_id, str) or not rule_id:
        raise ValueError("no _id")
    kind = data.get("type")
    if kind not in RULE_TYPES:
        raise ValueError(f"unknown type {str(kind)[:40]!r}")
    block = data.get("block", False)
    if not isinstance(block, bool):
        raise ValueError("block is not true or false")
    applied_to = data.get("applied_to", "matching")
    if applied_to not in ("matching", "not_matching"):
        raise ValueError("applied_to is neither matching nor not_matching")
    unidentified = data.get("applied_to_unidentified", False)
    if not isinstance(unidentified, bool):
        raise ValueError("applied_to_unidentified is not true or false")
    groups = compile_groups(data.get("regex_config"), REQUEST_FIELDS, rule_paths=True)
    response = data.get("response", {})
    if not isinstance(response, dict):
        raise ValueError("response is not an object")
    status = response.get("status", 0)
    valid_status = isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599
    if block and not valid_status:
        raise ValueError("a blocking rule's status is not an integer from 100 to 599")
    headers = _headers(response.get("headers"))
    body = response.get("body")
    return Rule(
        rule_id,
        kind,
        block,
        applied_to == "matching",
        unidentified,
        groups,
        status if block else 0,
        headers,
        body,
    )


def _headers(data: Any) -> Tuple[Tuple[str, str], ...]:
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise ValueError("response.headers is not an object")
    if len(data) > _MAX_HEADERS:
        raise ValueError(f"more than {_MAX_HEADERS} response headers")
    headers: List[Tuple[str, str]] = []
    for name, value in data.items():
        if not _TOKEN.match(name):
            raise ValueError(f"header name {name[:40]!r} is not a token")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"header {name[:40]!r} has a value that is not text")
        text = str(value)
        if _BAD_VALUE_CHARACTERS.search(text):
            raise ValueError(f"header {name[:40]!r} has control characters (CR/LF)")
        headers.append((name, text))
    return tuple(headers)


def _attach_entities(rules: Dict[str, Rule], data: Any, kind: str, problems: Problems) -> None:
    """config.user_rules / company_rules: entity id -> [{"rules": rule id, "values": {...}}]."""
    if data is None:
        return
    if not isinstance(data, dict):
        problems.add(f"{kind}_rules is not an object")
        return
    for entity, entries in data.items():
        if not isinstance(entries, list):
            problems.add(f"{kind}_rules entry of an id is not a list")
            continue
        for entry in entries:
            entry = as_object(entry)
            rule_id = entry.get("rules")
            rule = rules.get(rule_id) if isinstance(rule_id, str) else None
            if rule is None or rule.kind != kind:
                problems.add(f"{kind}_rules names a {kind} rule the rules lack")
                continue
            rule.entities[str(entity)] = _values(entry.get("values"), problems)


def _values(data: Any, problems: Problems) -> Values:
    values: Values = {}
    for name, value in as_object(data).items():
        if isinstance(value, (dict, list)) or value is None:
            problems.add("a rule value is not text")
            continue
        text = str(value)
        if _BAD_VALUE_CHARACTERS.search(text):
            problems.add("a rule value has control characters (CR/LF)")
            continue
        values[str(name)] = text
    return values


def _substitute(template: str, values: Values) -> str:
    if "{{" not in template:
        return template
    return _PLACEHOLDER.sub(lambda match: values.get(match.group(1), UNKNOWN), template)


def _substitute_all(body: Any, values: Values) -> Any:
    if isinstance(body, str):
        return _substitute(body, values)
    if isinstance(body, list):
        return [_substitute_all(item, values) for item in body]
    if isinstance(body, dict):
        return {key: _substitute_all(item, values) for key, item in body.items()}
    return body


def _has_placeholder(body: Any) -> bool:
    if isinstance(body, str):
        return _PLACEHOLDER.search(body) is not None
    if isinstance(body, list):
        return any(_has_placeholder(item) for item in body)
    if isinstance(body, dict):
        return any(_has_placeholder(item) for item in body.values())
    return False


def _body_json(body: Any) -> bytes:
    if body is None:
        return b""
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
