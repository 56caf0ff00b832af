"""Conditions of the app config and the governance rules: a field of the exchange searched with
a regular expression that came from the network.

A pattern is data from a collector, so it is compiled once per document and only when it is safe
to run on the request path: patterns longer than ``MAX_PATTERN_CHARS``, with a quantified
part that holds another quantifier or an alternation (``(a+)+``, ``(a|aa)*``: the shapes of
catastrophic backtracking), with backreferences, or with more than ``MAX_REPEATS`` unbounded
repeats are refused. Whatever is matched is cut to ``MAX_MATCHED_CHARS``, which bounds the work of
any accepted pattern. A refused pattern is a problem of its document (see ``Problems``).
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any, Callable, Dict, List, Optional, Pattern, Sequence, Tuple

from ..record import ExchangeRecord
from ..wire.identity import user_id_from_value

MAX_PATTERN_CHARS = 1000
MAX_MATCHED_CHARS = 4096
MAX_REPEATS = 4
# Field paths every condition knows; a rule may also name request.headers.<name> and
# request.body.<dotted path>.
REQUEST_FIELDS = ("request.verb", "request.route", "request.ip_address")
# Where Facts.route_values holds each of REQUEST_FIELDS.
ROUTE_INDEX = {"request.verb": 0, "request.route": 1, "request.ip_address": 2}
RESPONSE_FIELDS = ("response.status",)

# The regular expression parser of the running Python (``re._parser`` since 3.11).
try:
    _sre_parse: Any = importlib.import_module("re._parser")
except ImportError:  # Python 3.9 and 3.10
    _sre_parse = importlib.import_module("sre_parse")
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}


class Problems:
    """What was wrong with one document: each problem noted once, reported together."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.notes: List[str] = []

    def add(self, note: str) -> None:
        if note not in self.notes and len(self.notes) < 20:
            self.notes.append(note)


def compile_pattern(value: Any) -> Pattern[str]:
    """A network-supplied pattern, compiled; ValueError when it is not a string, does not
    compile or is not safe to run (see the module's text)."""
    if not isinstance(value, str):
        raise ValueError(f"pattern {value!r} is not a string")
    if len(value) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern longer than {MAX_PATTERN_CHARS} characters")
    try:
        parsed = _sre_parse.parse(value)
        compiled = re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"pattern {value[:80]!r} does not compile: {exc}") from None
    if _unsafe(parsed, False, [0]):
        raise ValueError(f"pattern {value[:80]!r} may backtrack catastrophically")
    return compiled


def _unsafe(items: Any, in_repeat: bool, repeats: List[int]) -> bool:
    """Whether a parsed pattern nests a quantifier (or alternation) in a quantifier, refers
    back to a group, or repeats without bound more than MAX_REPEATS times."""
    for op, argument in items:
        name = str(op)
        if name in _REPEATS:
            low, high, body = argument
            if high != 0 and high != 1:
                if in_repeat:
                    return True
                if high is _sre_parse.MAXREPEAT:
                    repeats[0] += 1
                    if repeats[0] > MAX_REPEATS:
                        return True
                if _unsafe(body, True, repeats):
                    return True
            elif _unsafe(body, in_repeat, repeats):
                return True
        elif name == "BRANCH":
            if in_repeat:
                return True
            for branch in argument[1]:
                if _unsafe(branch, in_repeat, repeats):
                    return True
        elif name == "SUBPATTERN":
            if _unsafe(argument[-1], in_repeat, repeats):
                return True
        elif name in ("GROUPREF", "GROUPREF_EXISTS"):
            return True
        elif name in ("ASSERT", "ASSERT_NOT"):
            if _unsafe(argument[1], in_repeat, repeats):
                return True
    return False


class Facts:
    """The fields of one exchange as conditions read them; the body parsed at most once."""

    __slots__ = ("record", "route_values", "_raw_body", "_body", "_body_parsed")

    def __init__(self, record: ExchangeRecord, body: Optional[bytes] = None) -> None:
        self.record = record
        # The fields most conditions read, in ROUTE_INDEX order.
        self.route_values = (record.method, record.path, record.remote_addr)
        # The request body as read before the app (the record's own comes at the end).
        self._raw_body = body
        self._body: Any = None
        self._body_parsed = False

    def field(self, path: str) -> Optional[str]:
        record = self.record
        if path == "request.route":
            return record.path
        if path == "request.verb":
            return record.method
        if path == "request.ip_address":
            return record.remote_addr
        if path == "response.status":
            return str(record.status)
        return None

    def header(self, lower_name: str) -> Optional[str]:
        """A request header's value, the name matched case-insensitively."""
        return request_header(self.record, lower_name)

    def body_field(self, keys: Sequence[str]) -> Optional[str]:
        """A field of the JSON request body, by dotted path; None when absent or no JSON."""
        if not self._body_parsed:
            self._body_parsed = True
            self._body = _json_body(self._raw_body)
        value = self._body
        for key in keys:
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                return None
        if value is None or isinstance(value, (dict, list)):
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


def request_header(record: ExchangeRecord, lower_name: str) -> Optional[str]:
    """The value of a request header of ``record`` (``lower_name`` lower-case), or None."""
    if record.request_headers_cgi:
        key = lower_name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        for name, value in record.request_headers:
            if name == key:
                return str(value)
        return None
    wanted = lower_name.encode("latin-1", "replace")
    for name, value in record.request_headers:
        if isinstance(name, bytes):
            if name.lower() == wanted:
                return value.decode("latin-1") if isinstance(value, bytes) else str(value)
        elif str(name).lower() == lower_name:
            return str(value)
    return None


def authorization_user(record: ExchangeRecord, header_names: Sequence[str], field: str) -> Any:
    """The user id the first present authorization header carries, as events read it."""
    for name in header_names:
        value = request_header(record, name.lower())
        if value:
            return user_id_from_value(value, field)
    return None


def _json_body(body: Optional[bytes]) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except Exception:  # not JSON: body conditions do not match
        return None


Reader = Callable[[Facts], Optional[str]]


class Condition:
    """``path`` searched with ``pattern``; a field that is absent never matches."""

    __slots__ = ("path", "pattern", "search", "index", "read", "needs_body")

    def __init__(self, path: str, pattern: Pattern[str], read: Reader) -> None:
        self.path = path
        self.pattern = pattern.pattern
        self.search = pattern.search
        # Where Facts.route_values holds the field; -1: ``read`` finds it.
        self.index = ROUTE_INDEX.get(path, -1)
        self.read = read
        self.needs_body = path.startswith("request.body.")


def compile_condition(data: Any, allowed: Tuple[str, ...], rule_paths: bool) -> Condition:
    """One condition ``{"path": ..., "value": <pattern>}``; ValueError when it is malformed,
    names a path outside ``allowed`` (and, when ``rule_paths``, request.headers.* and
    request.body.*) or carries an unsafe pattern."""
    if not isinstance(data, dict):
        raise ValueError("a condition is not an object")
    path = data.get("path")
    if not isinstance(path, str):
        raise ValueError("a condition has no path")
    pattern = compile_pattern(data.get("value"))
    read: Reader
    if path in allowed:
        read = _field_reader(path)
    elif rule_paths and path.startswith("request.headers.") and len(path) > 16:
        read = _header_reader(path[16:].lower())
    elif rule_paths and path.startswith("request.body.") and len(path) > 13:
        read = _body_reader(tuple(path[13:].split(".")))
    else:
        raise ValueError(f"unknown condition path {path[:80]!r}")
    return Condition(path, pattern, read)


def _field_reader(path: str) -> Reader:
    return lambda facts: facts.field(path)


def _header_reader(name: str) -> Reader:
    return lambda facts: facts.header(name)


def _body_reader(keys: Tuple[str, ...]) -> Reader:
    return lambda facts: facts.body_field(keys)


Group = Tuple[Condition, ...]


def compile_groups(data: Any, allowed: Tuple[str, ...], rule_paths: bool) -> Tuple[Group, ...]:
    """``regex_config``: groups OR-ed, conditions within a group AND-ed; ValueError on any bad
    part. Missing or empty: no group (the caller decides what that means)."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ValueError("regex_config is not a list")
    groups: List[Group] = []
    for group in data:
        if not isinstance(group, dict):
            raise ValueError("a regex_config entry is not an object")
        conditions = group.get("conditions")
        if not isinstance(conditions, list) or not conditions:
            raise ValueError("a regex_config entry has no conditions")
        groups.append(tuple(compile_condition(c, allowed, rule_paths) for c in conditions))
    return tuple(groups)


def group_matches(group: Group, facts: Facts) -> bool:
    """Whether every condition of ``group`` matches (an absent field never does)."""
    values = facts.route_values
    for condition in group:
        index = condition.index
        text = values[index] if index >= 0 else condition.read(facts)
        if text is None or condition.search(text[:MAX_MATCHED_CHARS]) is None:
            return False
    return True


def any_group_matches(groups: Tuple[Group, ...], facts: Facts) -> bool:
    for group in groups:
        if group_matches(group, facts):
            return True
    return False


def as_object(value: Any) -> Dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def any_route_search(groups: Sequence[Group]) -> Optional[Callable[[str], Any]]:
    """One search of the route that finds something whenever any of ``groups`` may match:
    every group has a route condition and the route must match one of them. None when some
    group has no route condition (or the patterns do not combine)."""
    patterns = []
    for group in groups:
        route = [c.pattern for c in group if c.index == ROUTE_INDEX["request.route"]]
        if not route:
            return None
        patterns.append(route[0])
    if not patterns:
        return None
    try:
        return re.compile("|".join(f"(?:{pattern})" for pattern in patterns)).search
    except (re.error, RecursionError, OverflowError):  # a flag or group name that clashes
        return None
