"""Slow, obviously correct statements of rules the wire implements with speed in mind.

Production code never calls these; tests check the production path against them.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

from moesif_integrations.core.config.values import IPNetwork
from moesif_integrations.core.wire.headers import (
    canonical_header_name,
    fix_text,
    header_name_from_environ_key,
)
from moesif_integrations.core.wire.identity import forwarded_for, parse_ip

# What a URI cannot hold as it is (spaces, controls, non-ASCII and the characters below). In
# a path every "%" is literal; in a query only a "%" that starts no escape is.
PATH_UNSAFE = r'[^\x21-\x7e]|["#%<>?\\^`{|}]'
QUERY_UNSAFE = r'[^\x21-\x7e]|["#<>\\^`{|}]|%(?![0-9A-Fa-f]{2})'
PATH_UNSAFE_TEXT = re.compile(PATH_UNSAFE)
PATH_UNSAFE_BYTES = re.compile(PATH_UNSAFE.encode())
QUERY_UNSAFE_TEXT = re.compile(QUERY_UNSAFE)
QUERY_UNSAFE_BYTES = re.compile(QUERY_UNSAFE.encode())


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return fix_text(value if isinstance(value, str) else str(value))


def join_headers(pairs: Iterable[Tuple[Any, Any]], from_environ: bool) -> Dict[str, str]:
    """Header pairs as one object: the first spelling of a name (any case) names the entry, and
    the values of all its spellings are joined with ", " in order."""
    joined: Dict[str, str] = {}
    for name, value in pairs:
        if from_environ:
            if not value and name.startswith("CONTENT_"):
                continue  # an empty CONTENT_LENGTH or CONTENT_TYPE is no header
            name = header_name_from_environ_key(name)
        elif isinstance(name, (bytes, bytearray)):
            name = canonical_header_name(_text(name))
        else:
            name = fix_text(name)
        value = _text(value)
        for key in joined:
            if key.lower() == name.lower():
                joined[key] = joined[key] + ", " + value
                break
        else:
            joined[name] = value
    return joined


def find_header(headers: Dict[str, str], lower_name: str) -> Optional[str]:
    """A header's value by lower-case name, whatever its spelling in ``headers``."""
    for name, value in headers.items():
        if name.lower() == lower_name:
            return value
    return None


def client_ip(
    remote_addr: Optional[str],
    headers: Dict[str, str],
    trusted: Tuple[IPNetwork, ...],
    header: str = "x-forwarded-for",
) -> Optional[str]:
    """The client's address, believing the one forwarding header ``header`` only from trusted
    proxies (the rule ClientIpResolver documents), computed afresh."""

    def is_trusted(address: Any) -> bool:
        return any(address in network for network in trusted)

    if not remote_addr:
        return None
    peer = parse_ip(remote_addr)
    if peer is None:
        return None
    if not is_trusted(peer):
        return str(peer)
    hops: List[str] = []
    value = find_header(headers, header.lower())
    if value:
        hops = forwarded_for(value) if header.lower() == "forwarded" else value.split(",")
    answer = peer
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            break
        answer = address
        if not is_trusted(address):
            break
    return str(answer)
