"""Turning one raw option value, typed or text, into the form the settings hold.

``convert`` either returns the normalised value or raises ``InvalidValueError`` whose text completes
the sentence "expected ..."; ``settings.py`` adds the key, the source and what was given.
"""

from __future__ import annotations

import enum
import importlib
import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple, Union
from urllib.parse import urlsplit

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Hook = Callable[..., Any]

_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})
# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_LONGEST_SHOWN = 80
# C0 and C1 control characters and DEL: never part of an id, a key or a URL. A trailing newline
# (an id read from a file) is stripped with the other surrounding whitespace before this check.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# The user-information part of a URL ("user:password@"), up to the last "@" of the authority.
_URL_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


class OptionKind(enum.Enum):
    """What an option holds; the value is the phrase the README table shows."""

    BOOL = "boolean"
    INT = "integer"
    FLOAT = "number"
    STR = "string"
    OPTIONAL_STR = "string or none"
    URL = "URL"
    HOOK = "callable"
    STR_LIST = "list of strings"
    HEADER = "header name"
    HEADER_LIST = "list of header names"
    NETWORK_LIST = "list of IP networks"


class InvalidValueError(Exception):
    """A value that does not fit its option; the text says what was expected."""


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a numeric option (``above`` is an exclusive lower bound)."""

    minimum: Optional[float] = None
    maximum: Optional[float] = None
    above: Optional[float] = None

    def describe(self) -> str:
        """'from 1 to 16', 'of at least 0', 'greater than 0', or '' when unbounded."""
        if self.above is not None:
            lower = f"greater than {self.above}"
            return lower if self.maximum is None else f"{lower} and at most {self.maximum}"
        if self.minimum is not None and self.maximum is not None:
            return f"from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"of at least {self.minimum}"
        if self.maximum is not None:
            return f"of at most {self.maximum}"
        return ""

    def contains(self, number: float) -> bool:
        if self.above is not None and not number > self.above:
            return False
        if self.minimum is not None and number < self.minimum:
            return False
        return self.maximum is None or number <= self.maximum


def expectation(kind: OptionKind, bounds: Bounds, *, text: bool) -> str:
    """The "expected ..." phrase for a kind, as a user reads it."""
    if kind is OptionKind.BOOL:
        return (
            "a boolean (true/false, yes/no, on/off, 1/0)" if text else "a boolean (true or false)"
        )
    if kind in (OptionKind.INT, OptionKind.FLOAT):
        noun = "an integer" if kind is OptionKind.INT else "a number"
        limits = bounds.describe()
        return f"{noun} {limits}" if limits else noun
    if kind is OptionKind.STR:
        return "a string"
    if kind is OptionKind.HEADER:
        return "one HTTP header name, such as X-Forwarded-For"
    if kind is OptionKind.OPTIONAL_STR:
        return "a string or None"
    if kind is OptionKind.URL:
        return "an http or https URL with a host, such as https://api.moesif.net"
    if kind is OptionKind.HOOK:
        if text:
            return "the dotted name of a callable, such as package.module:function"
        return "a callable (a function) or None"
    if kind is OptionKind.STR_LIST:
        return "a list of strings (or one comma-separated string)"
    if kind is OptionKind.HEADER_LIST:
        return "a list of HTTP header names (or one comma-separated string)"
    return "a list of IP networks such as 10.0.0.0/8 or ::1/128 (or one comma-separated string)"


def describe_given(value: object, *, secret: bool = False) -> str:
    """``'yes' (str)``: a value as an error message shows it, shortened, secrets cut to a prefix."""
    if secret:
        shown = repr(redact(value)) if isinstance(value, str) else "<hidden>"
    else:
        shown = repr(value)
        if len(shown) > _LONGEST_SHOWN:
            shown = shown[: _LONGEST_SHOWN - 1] + "…"
    return f"{shown} ({type(value).__name__})"


def redact_url(url: str) -> str:
    """``url`` with its user information (``user:password@``) replaced by ``***@``."""
    return _URL_USERINFO.sub(r"\1***@", url)


def redact(secret: str) -> str:
    """The first four characters and an ellipsis; short values show nothing."""
    if not secret:
        return ""
    return secret[:4] + "…" if len(secret) > 8 else "…"


def convert(kind: OptionKind, bounds: Bounds, value: Any, *, text: bool) -> Any:
    """The normalised value of an option, from a typed value or (``text``) a string to parse."""
    if text and isinstance(value, str):
        value = _from_text(kind, bounds, value)
    return _from_typed(kind, bounds, value, text=text)


def _from_text(kind: OptionKind, bounds: Bounds, raw: str) -> Any:
    """Text (an environment variable, an ini value) to the Python type of the kind."""
    stripped = raw.strip()
    if kind is OptionKind.BOOL:
        word = stripped.lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise InvalidValueError(expectation(kind, bounds, text=True))
    if kind is OptionKind.INT:
        try:
            return int(stripped, 10)
        except ValueError:
            raise InvalidValueError(expectation(kind, bounds, text=True)) from None
    if kind is OptionKind.FLOAT:
        try:
            return float(stripped)
        except ValueError:
            raise InvalidValueError(expectation(kind, bounds, text=True)) from None
    if kind is OptionKind.OPTIONAL_STR:
        return stripped or None
    if kind is OptionKind.HOOK:
        return _resolve_hook_name(stripped) if stripped else None
    if kind in (OptionKind.STR_LIST, OptionKind.HEADER_LIST, OptionKind.NETWORK_LIST):
        return split_list_text(stripped)
    return stripped  # STR, HEADER, URL


def _from_typed(kind: OptionKind, bounds: Bounds, value: Any, *, text: bool) -> Any:
    """Checks a value that should already have the kind's type, and normalises it."""
    expected = expectation(kind, bounds, text=text)
    if kind is OptionKind.BOOL:
        if not isinstance(value, bool):
            raise InvalidValueError(expected)
        return value
    if kind is OptionKind.INT:
        # bool is an int subclass, but True as a batch size is a mistake, not a number.
        if isinstance(value, bool) or not isinstance(value, int) or not bounds.contains(value):
            raise InvalidValueError(expected)
        return value
    if kind is OptionKind.FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidValueError(expected)
        number = float(value)
        if not math.isfinite(number) or not bounds.contains(number):
            raise InvalidValueError(expected)
        return number
    if kind is OptionKind.STR:
        if not isinstance(value, str):
            raise InvalidValueError(expected)
        return _clean_text(value)
    if kind is OptionKind.OPTIONAL_STR:
        if value is None:
            return value
        if not isinstance(value, str):
            raise InvalidValueError(expected)
        return _clean_text(value)
    if kind is OptionKind.HEADER:
        if not isinstance(value, str) or not _HEADER_NAME.match(value.strip()):
            raise InvalidValueError(expected)
        return value.strip().lower()
    if kind is OptionKind.URL:
        if not isinstance(value, str):
            raise InvalidValueError(expected)
        return _check_url(_clean_text(value), expected)
    if kind is OptionKind.HOOK:
        if value is not None and not callable(value):
            raise InvalidValueError(expected)
        return value
    items = _as_list(value, expected)
    if kind is OptionKind.NETWORK_LIST:
        return _parse_networks(items, expected)
    names = [_as_str_item(item, expected) for item in items]
    names = [name for name in names if name]
    if kind is OptionKind.HEADER_LIST:
        for name in names:
            if not _HEADER_NAME.match(name):
                raise InvalidValueError(f"{expected}; {name!r} is not a header name")
        names = [name.lower() for name in names]
    # Duplicates add nothing; dict keeps the first occurrence's order.
    return tuple(dict.fromkeys(names))


def _clean_text(value: str) -> str:
    """``value`` without surrounding whitespace; refused when a control character remains (a
    newline inside an id would break every call to the collector)."""
    stripped = value.strip()
    found = _CONTROL.search(stripped)
    if found is not None:
        raise InvalidValueError(
            "text without control characters (surrounding whitespace is stripped); "
            f"found {found.group()!r} at position {found.start()}"
        )
    return stripped


def split_list_text(text: str) -> List[str]:
    """Items of a list written as text: comma-separated if there is a comma, else by whitespace.

    Commas first, so a JSON field name with a space ("first name, last name") survives; ini files
    write one item per line, which the whitespace rule covers.
    """
    if "," in text:
        parts = text.split(",")
    else:
        parts = text.split()
    return [part.strip() for part in parts if part.strip()]


def _as_list(value: Any, expected: str) -> List[Any]:
    if isinstance(value, str):
        # moesifwsgi takes AUTHORIZATION_HEADER_NAME as "X-Api-Key,Authorization".
        return list(value.split(","))
    if isinstance(value, (list, tuple)):
        return list(value)
    raise InvalidValueError(expected)


def _as_str_item(item: Any, expected: str) -> str:
    if not isinstance(item, str):
        raise InvalidValueError(f"{expected}; {item!r} is not a string")
    return item.strip()


def _parse_networks(items: List[Any], expected: str) -> Tuple[IPNetwork, ...]:
    networks: List[IPNetwork] = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if not item:
                continue
        elif not isinstance(
            item,
            (
                ipaddress.IPv4Network,
                ipaddress.IPv6Network,
                ipaddress.IPv4Address,
                ipaddress.IPv6Address,
            ),
        ):
            raise InvalidValueError(f"{expected}; {item!r} is not one")
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise InvalidValueError(f"{expected}; {item!r} is not one") from None
        if network not in networks:
            networks.append(network)
    return tuple(networks)


def _check_url(url: str, expected: str) -> str:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise InvalidValueError(expected) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidValueError(expected)
    if parts.query or parts.fragment:
        # Endpoint paths are appended to the base URL; a query or fragment would swallow them.
        raise InvalidValueError(f"{expected}, without a query or fragment")
    return url.rstrip("/")


def _resolve_hook_name(name: str) -> Hook:
    """Imports ``pkg.mod:attr`` or ``pkg.mod.attr`` and checks the result is callable."""
    expected = expectation(OptionKind.HOOK, Bounds(), text=True)
    try:
        target = resolve_dotted_name(name)
    except Exception as error:  # importing user code can raise anything
        raise InvalidValueError(f"{expected} (cannot import it: {error})") from None
    if not callable(target):
        raise InvalidValueError(f"{expected} (it names a {type(target).__name__}, not a callable)")
    return target


def resolve_dotted_name(name: str) -> object:
    """The object named by ``pkg.mod:attr.sub`` or ``pkg.mod.attr``.

    Without a colon the longest importable module prefix is taken, so ``pkg.mod.Class.method``
    works. Raises ImportError or LookupError (with a reason) when nothing matches.
    """
    if ":" in name:
        module_name, _, attribute_path = name.partition(":")
        if not module_name or not attribute_path:
            raise LookupError(f"{name!r} is not of the form package.module:attribute")
        return _walk(importlib.import_module(module_name), module_name, attribute_path)
    parts = name.split(".")
    if len(parts) < 2 or not all(parts):
        raise LookupError(f"{name!r} names no module and attribute")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Only "this prefix is not a module" means try a shorter one; a module that exists
            # but fails to import its own dependencies is a real error to report.
            missing = error.name or ""
            if module_name == missing or module_name.startswith(missing + "."):
                continue
            raise
        return _walk(module, module_name, ".".join(parts[split:]))
    raise ModuleNotFoundError(f"No module named {parts[0]!r}", name=parts[0])


def _walk(target: object, module_name: str, attribute_path: str) -> object:
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise LookupError(f"no attribute {attribute!r} under {module_name!r}") from None
    return target
