"""Raw exchange record -> wire event (docs/protocol.md, "The event"), on the worker threads.

The order matters: identity is read from the headers as received, then bodies are encoded
and body masks applied, then header masks, then the user's MASK_EVENT_MODEL sees the result.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple

from ..counters import Counters
from ..logs import LogOnce
from ..record import ExchangeRecord
from .bodies import FAST_JSON, encode_body, json_fragment
from .headers import (
    HeaderMasker,
    canonical_header_name,
    fix_text,
    join_environ_headers,
    join_headers_indexed,
    join_plain_headers,
)
from .identity import ClientIpResolver, IPNetwork, user_id_from_value
from .mask_event_model import MaskEventError, apply_mask_event_model
from .serialize import UnserializableEventError, serialize_event
from .times import format_times

__all__ = [
    "EventBuilder",
    "EventEncoder",
    "EventOptions",
    "MaskEventError",
    "UnserializableEventError",
    "build_uri",
    "serialize_event",
]

TRANSACTION_HEADER = "X-Moesif-Transaction-Id"
_TRANSACTION_HEADER_LOWER = "x-moesif-transaction-id"

_problems = LogOnce()


@dataclass(frozen=True)
class EventOptions:
    """What event building needs from the settings, and nothing else."""

    log_body: bool = True
    api_version: Optional[str] = None
    # Lower-case header names tried in order for the user id.
    authorization_header_names: Tuple[str, ...] = ("authorization",)
    authorization_user_id_field: str = "sub"
    request_header_masks: Tuple[str, ...] = ()
    response_header_masks: Tuple[str, ...] = ()
    request_body_masks: FrozenSet[str] = frozenset()
    response_body_masks: FrozenSet[str] = frozenset()
    request_max_body_size: int = 100 * 1024
    response_max_body_size: int = 100 * 1024
    trusted_proxies: Tuple[IPNetwork, ...] = ()
    mask_sensitive_headers: bool = True
    mask_event_model: Optional[Callable[[Any], Any]] = None
    disabled_transaction_id: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> EventOptions:
        """Reads the same-named (lower-case) attributes of a Settings object."""
        return cls(
            log_body=bool(settings.log_body),
            api_version=settings.api_version,
            authorization_header_names=tuple(
                name.strip().lower() for name in settings.authorization_header_name
            ),
            authorization_user_id_field=str(settings.authorization_user_id_field).lower(),
            request_header_masks=tuple(n.lower() for n in settings.request_header_masks),
            response_header_masks=tuple(n.lower() for n in settings.response_header_masks),
            request_body_masks=frozenset(settings.request_body_masks),
            response_body_masks=frozenset(settings.response_body_masks),
            request_max_body_size=int(settings.request_max_body_size),
            response_max_body_size=int(settings.response_max_body_size),
            trusted_proxies=tuple(settings.trusted_proxies),
            mask_sensitive_headers=bool(settings.mask_sensitive_headers),
            mask_event_model=settings.mask_event_model,
            disabled_transaction_id=bool(settings.disabled_transaction_id),
        )


# PATH_INFO is already percent-decoded by the server, so every "%" in it is a literal one and
# is quoted, like "?" and "#" (they came from %3F and %23). QUERY_STRING is raw: existing
# escapes stay; only a "%" not starting an escape is quoted. Both lose spaces, controls,
# non-ASCII and the characters that are never valid in a URI.
_PATH_UNSAFE_TEXT = re.compile(r'[^\x21-\x7e]|["#%<>?\\^`{|}]')
_PATH_UNSAFE_BYTES = re.compile(rb'[^\x21-\x7e]|["#%<>?\\^`{|}]')
_QUERY_UNSAFE_TEXT = re.compile(r'[^\x21-\x7e]|["#<>\\^`{|}]|%(?![0-9A-Fa-f]{2})')
_QUERY_UNSAFE_BYTES = re.compile(rb'[^\x21-\x7e]|["#<>\\^`{|}]|%(?![0-9A-Fa-f]{2})')


# The same rules as sets of characters, for the common check "nothing to quote": a set test
# of each character beats a regular expression search on short text.
_CONTROLS_AND_SPACE = frozenset(map(chr, [*range(0x21), 0x7F]))
_PATH_UNSAFE_CHARS = _CONTROLS_AND_SPACE | frozenset('"#%<>?\\^`{|}')
# Both sets but for "?", which the query may hold.
_TAIL_UNSAFE_CHARS = _CONTROLS_AND_SPACE | frozenset('"#%<>\\^`{|}')


def _percent_encode(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match.group()[0]


def _quote(text: str, unsafe_text: re.Pattern[str], unsafe_bytes: re.Pattern[bytes]) -> str:
    if unsafe_text.search(text) is None:
        return text
    try:
        raw = text.encode("latin-1")  # WSGI: the bytes the client sent, one per character
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")  # a framework that decoded the path itself
    return unsafe_bytes.sub(_percent_encode, raw).decode("ascii")


def build_uri(scheme: str, host: str, path: str, query: str) -> str:
    """``scheme://host`` + path + ``?query``; the scheme's default port is left out.

    The path and query are percent-encoded where they hold what a URI cannot (non-ASCII bytes
    become their UTF-8 escapes, exactly as the client sent them), so the result is valid text.
    """
    origin = _origins.get(host)
    if origin is None or origin[0] != scheme:
        origin = _origin(scheme, host)
    if not path:
        path = "/"
    if query:
        # One test of path and query for the common case: ASCII, nothing to quote in either
        # ("?" only in the query); anything else, each part by its own rule.
        tail = path + "?" + query
        if tail.isascii() and _TAIL_UNSAFE_CHARS.isdisjoint(tail) and "?" not in path:
            return origin[1] + tail
        if not path.isascii() or not _PATH_UNSAFE_CHARS.isdisjoint(path):
            path = _quote(path, _PATH_UNSAFE_TEXT, _PATH_UNSAFE_BYTES)
        # A "%" may start an escape, which stays: the expression decides.
        return origin[1] + path + "?" + _quote(query, _QUERY_UNSAFE_TEXT, _QUERY_UNSAFE_BYTES)
    if not path.isascii() or not _PATH_UNSAFE_CHARS.isdisjoint(path):
        path = _quote(path, _PATH_UNSAFE_TEXT, _PATH_UNSAFE_BYTES)
    return origin[1] + path


# Host as received -> (scheme, "scheme://host" without the default port). Hosts come from
# clients, so the memory is bounded: past the limit, origins are computed each time.
_origins: Dict[str, Tuple[str, str]] = {}
_ORIGINS_LIMIT = 256


def _origin(scheme: str, host: str) -> Tuple[str, str]:
    text = fix_text(host)
    if scheme == "http" and text.endswith(":80"):
        text = text[:-3]
    elif scheme == "https" and text.endswith(":443"):
        text = text[:-4]
    origin = (scheme, scheme + "://" + text)
    if len(_origins) < _ORIGINS_LIMIT:
        _origins[host] = origin
    return origin


# Writing a JSON body back as its original text saves re-encoding it, but splicing costs more
# than re-encoding a small body.
_SPLICE_MIN_BYTES = 4096
# With orjson a body is validated and embedded as its own bytes whatever its size.
_FAST_JSON = FAST_JSON


class EventBuilder:
    """Turns ExchangeRecords into wire events (plain dicts ready for ``serialize_event``).

    ``fingerprint_key`` keys the HMAC of masked header values (see HeaderMasker). Events carry
    ``body`` and ``transfer_encoding`` only when there is a body: the keys are left out, not
    null. ``transaction_id`` is left out when there is none (transaction ids disabled). A JSON
    body keeps its original text: an ``orjson.Fragment`` (with orjson and nothing masked in
    it), a ``RawJson`` or a ``JsonDocument`` (see bodies.py), unless MASK_EVENT_MODEL is set,
    in which case it is the plain parsed value the hook can edit.
    """

    def __init__(self, options: EventOptions, fingerprint_key: bytes) -> None:
        self._options = options
        # The hook edits parsed bodies, so their original text would be stale.
        self._keep_text = options.mask_event_model is None
        self._client_ip = ClientIpResolver(options.trusted_proxies)
        self._clients: Dict[Any, str] = self._client_ip.clients
        self._auth_names = tuple(name.lower() for name in options.authorization_header_names)
        self._auth_first = self._auth_names[0] if self._auth_names else ""
        self._auth_rest = self._auth_names[1:]
        self._user_id_field = options.authorization_user_id_field.lower()
        # A user id read from the transaction id header (an odd setting, but one) sees the id
        # this event carries, which the header lookups must then find.
        self._auth_reads_transaction = _TRANSACTION_HEADER_LOWER in self._auth_names
        # Headers joined from environ keys by join_environ_headers have canonical names and no
        # index of their own: every name the build looks up -> its canonical spelling.
        self._looked_up = (
            "content-type",
            "content-encoding",
            "forwarded",
            "x-forwarded-for",
            _TRANSACTION_HEADER_LOWER,
            *self._auth_names,
        )
        self._environ_index = {name: canonical_header_name(name) for name in self._looked_up}
        self._request_masker = HeaderMasker(
            options.mask_sensitive_headers, options.request_header_masks, fingerprint_key
        )
        self._response_masker = HeaderMasker(
            options.mask_sensitive_headers, options.response_header_masks, fingerprint_key
        )
        self._request_clear = self._request_masker.clear_names
        self._response_clear = self._response_masker.clear_names
        # With orjson, a JSON body with nothing to mask goes as its own bytes: a Fragment.
        raw_json = self._keep_text and _FAST_JSON
        self._raw_json_request = raw_json and not options.request_body_masks
        self._raw_json_response = raw_json and not options.response_body_masks
        if options.mask_event_model is not None:
            # Fail at start-up, not once per event, when the optional dependency is missing.
            try:
                import moesifapi.models  # type: ignore[import-untyped]  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    "MASK_EVENT_MODEL needs the moesifapi package: "
                    "pip install 'moesif-integrations[moesifapi]'"
                ) from exc

    def _body(
        self,
        data: bytes,
        size: int,
        limit: int,
        headers: Dict[str, str],
        index: Dict[str, str],
        raw_json: bool,
        masks: FrozenSet[str],
    ) -> Optional[Tuple[Any, str]]:
        """(body, transfer_encoding) of one side of the exchange; None when there is none."""
        content_type = headers.get(index.get("content-type"))  # type: ignore[arg-type]
        encoding = headers.get(index.get("content-encoding"))  # type: ignore[arg-type]
        if raw_json and not encoding:
            fragment = json_fragment(data, size, limit, content_type)
            if fragment is not None:
                return fragment
        body, transfer_encoding = encode_body(
            data,
            size,
            limit,
            content_type,
            encoding,
            masks,
            self._keep_text and (_FAST_JSON or len(data) > _SPLICE_MIN_BYTES),
        )
        return None if transfer_encoding is None else (body, transfer_encoding)

    def build(self, record: ExchangeRecord) -> Dict[str, Any]:
        """The wire event of ``record``. Raises MaskEventError when MASK_EVENT_MODEL fails."""
        # Runs once per event on the app's interpreter: the common case takes the fast joins
        # and inline lookups, anything unusual the general path (join_headers_indexed).
        options = self._options
        transaction_id = None if options.disabled_transaction_id else record.transaction_id

        # Headers as dicts plus an index: lower-case name -> the key in the dict. An index miss
        # gives None, and dict.get(None) is None too, hence the one-line lookups (for which
        # mypy wants "type: ignore[arg-type]").
        pairs = record.request_headers
        request_headers: Optional[Dict[str, str]] = None
        if record.request_headers_cgi:
            request_headers = join_environ_headers(pairs)
            request_index = self._environ_index
        else:
            joined = join_plain_headers(pairs)
            if joined is not None:
                request_headers, request_index = joined
        if request_headers is None:
            request_headers, request_index = join_headers_indexed(pairs, record.request_headers_cgi)
        if transaction_id:
            spelt = request_index.get(_TRANSACTION_HEADER_LOWER)
            if spelt is not None:
                # A client's own id: replaced by the one we use.
                request_headers.pop(spelt, None)
            request_headers[TRANSACTION_HEADER] = transaction_id
            if self._auth_reads_transaction:
                # The index may be shared (join_plain_headers): a copy of what is looked up.
                found = {name: request_index.get(name) for name in self._looked_up}
                request_index = {name: key for name, key in found.items() if key is not None}
                request_index[_TRANSACTION_HEADER_LOWER] = TRANSACTION_HEADER
        pairs = record.response_headers
        joined = join_plain_headers(pairs)
        if joined is None:
            response_headers, response_index = join_headers_indexed(pairs, False)
        else:
            response_headers, response_index = joined

        user_id = record.user_id
        if user_id is None and self._auth_names:
            value = request_headers.get(request_index.get(self._auth_first))  # type: ignore[arg-type]
            if value is None and self._auth_rest:
                for name in self._auth_rest:
                    value = request_headers.get(request_index.get(name))  # type: ignore[arg-type]
                    if value is not None:
                        break
            if value:
                user_id = user_id_from_value(value, self._user_id_field)

        request_body = response_body = None
        if options.log_body:
            if record.request_body is not None:
                request_body = self._body(
                    record.request_body,
                    record.request_body_size,
                    options.request_max_body_size,
                    request_headers,
                    request_index,
                    self._raw_json_request,
                    options.request_body_masks,
                )
            if record.response_body is not None:
                response_body = self._body(
                    record.response_body,
                    record.response_body_size,
                    options.response_max_body_size,
                    response_headers,
                    response_index,
                    self._raw_json_response,
                    options.response_body_masks,
                )

        # Masking last: identity and the bodies' content types read the headers as received.
        # Most events have nothing to mask, which the maskers' name sets tell in one call.
        masked_request_headers = request_headers
        if not self._request_clear.issuperset(request_headers):
            masked_request_headers = self._request_masker.mask(request_headers)
        masked_response_headers = response_headers
        if not self._response_clear.issuperset(response_headers):
            masked_response_headers = self._response_masker.mask(response_headers)

        request_time, response_time = format_times(record.request_time, record.response_time)
        request: Dict[str, Any] = {
            "time": request_time,
            "uri": build_uri(record.scheme, record.host, record.path, record.query),
            "verb": record.method,
            "headers": masked_request_headers,
            "api_version": options.api_version,
            "ip_address": self._clients.get(record.remote_addr)
            or self._client_ip.resolve(record.remote_addr, request_headers, request_index),
        }
        if request_body is not None:
            request["body"], request["transfer_encoding"] = request_body
        response: Dict[str, Any] = {
            "time": response_time,
            "status": record.status,
            "headers": masked_response_headers,
        }
        if response_body is not None:
            response["body"], response["transfer_encoding"] = response_body

        metadata = record.metadata
        if metadata is not None and type(metadata) is not dict:
            metadata = _metadata(metadata)
        event: Dict[str, Any] = {
            "request": request,
            "response": response,
            "session_token": record.session_token,
            "user_id": user_id,
            "company_id": record.company_id,
            "metadata": metadata,
            "direction": record.direction,
            "weight": record.weight,
            "blocked_by": record.blocked_by,
        }
        if transaction_id:
            event["transaction_id"] = transaction_id
        if options.mask_event_model is not None:
            event = apply_mask_event_model(options.mask_event_model, event)
        return event


def _metadata(metadata: Any) -> Any:
    if metadata is None or isinstance(metadata, dict):
        return metadata
    _problems.log(
        "metadata-type",
        logging.WARNING,
        "event metadata must be a dict, got %s; sent without metadata",
        type(metadata).__name__,
    )
    return None


class EventEncoder:
    """Records -> wire JSON, one event at a time: a bad event is dropped and counted alone
    (``dropped_mask_error``, ``dropped_unserializable``), never its batch."""

    def __init__(self, settings: Any, counters: Counters) -> None:
        self.counters = counters
        self._problems = LogOnce()
        self.builder = EventBuilder(
            EventOptions.from_settings(settings), fingerprint_key=fingerprint_key(settings)
        )

    def encode(self, record: ExchangeRecord) -> Optional[bytes]:
        """The record's wire JSON; None (counted and logged) when it must be dropped."""
        try:
            event = self.builder.build(record)
        except MaskEventError:
            self.counters.add("dropped_mask_error")
            self._problems.log(
                "mask",
                logging.WARNING,
                "MASK_EVENT_MODEL failed; the event was dropped (fails closed)",
                exc_info=True,
            )
            return None
        try:
            return serialize_event(event)
        except UnserializableEventError as exc:
            self.counters.add("dropped_unserializable")
            self._problems.log(
                "unserializable",
                logging.WARNING,
                "an event could not be serialised to JSON (%s); it was dropped",
                exc,
            )
            return None


def fingerprint_key(settings: Any) -> bytes:
    """A per-application key for header fingerprints: stable across processes and restarts."""
    return hashlib.sha256(
        b"moesif-integrations/header-fingerprint/" + settings.application_id.encode("utf-8")
    ).digest()
