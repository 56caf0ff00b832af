"""Raw exchange record -> wire event (docs/protocol.md, "The event"), on the worker threads.

The order matters: identity is read from the headers as received, then bodies are encoded
and body masks applied, then header masks, then the user's MASK_EVENT_MODEL sees the result.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from typing import Any, Dict, FrozenSet, Optional, Tuple

from .. import json_backend
from ..config.schema import Settings
from ..counters import Counters
from ..logs import LogOnce
from ..record import ExchangeRecord
from .bodies import encode_body
from .fields import SENSITIVE_FIELDS, field_names, mask_urlencoded
from .headers import HeaderMasker, IndexedHeaders, fix_text, join_headers
from .identity import ClientIpResolver, user_id_from_value
from .mask_event_model import MaskEventError, apply_mask_event_model
from .serialize import UnserializableEventError, serialize_event
from .times import format_times

__all__ = [
    "EventBuilder",
    "EventEncoder",
    "MaskEventError",
    "UnserializableEventError",
    "build_uri",
    "fingerprint_key",
    "serialize_event",
]

TRANSACTION_HEADER = "X-Moesif-Transaction-Id"

_problems = LogOnce()


def _unsafe(quoted: str) -> str:
    """A regular expression class of what a URI cannot hold as it is: spaces, controls,
    non-ASCII, and the printable ASCII characters in ``quoted``."""
    kept = "".join(char for char in map(chr, range(0x21, 0x7F)) if char not in quoted)
    return "[^" + re.escape(kept) + "]"


# PATH_INFO is already percent-decoded by the server, so every "%" in it is a literal one and
# is quoted, like "?" and "#" (they came from %3F and %23). QUERY_STRING is raw: existing
# escapes stay; only a "%" not starting an escape is quoted. Both lose spaces, controls,
# non-ASCII and the characters that are never valid in a URI.
_PATH_UNSAFE = _unsafe('"#%<>?\\^`{|}')
_QUERY_UNSAFE = _unsafe('"#<>\\^`{|}') + "|%(?![0-9A-Fa-f]{2})"
_PATH_UNSAFE_TEXT = re.compile(_PATH_UNSAFE)
_PATH_UNSAFE_BYTES = re.compile(_PATH_UNSAFE.encode("ascii"))
_QUERY_UNSAFE_TEXT = re.compile(_QUERY_UNSAFE)
_QUERY_UNSAFE_BYTES = re.compile(_QUERY_UNSAFE.encode("ascii"))


def _percent_encode(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match.group()[0]


def _percent_encoded(text: str, unsafe: re.Pattern[bytes]) -> str:
    try:
        raw = text.encode("latin-1")  # WSGI: the bytes the client sent, one per character
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")  # a framework that decoded the path itself
    return unsafe.sub(_percent_encode, raw).decode("ascii")


def build_uri(scheme: str, host: str, path: str, query: str) -> str:
    """``scheme://host`` + path + ``?query``; the scheme's default port is left out.

    The path and query are percent-encoded where they hold what a URI cannot (non-ASCII bytes
    become their UTF-8 escapes, exactly as the client sent them), so the result is valid text.
    """
    origin = fix_text(host)
    if scheme == "http" and origin.endswith(":80"):
        origin = origin[:-3]
    elif scheme == "https" and origin.endswith(":443"):
        origin = origin[:-4]
    if not path:
        path = "/"
    if _PATH_UNSAFE_TEXT.search(path) is not None:
        path = _percent_encoded(path, _PATH_UNSAFE_BYTES)
    if not query:
        return scheme + "://" + origin + path
    if _QUERY_UNSAFE_TEXT.search(query) is not None:
        # A "%" may start an escape, which stays: the expression decides.
        query = _percent_encoded(query, _QUERY_UNSAFE_BYTES)
    return scheme + "://" + origin + path + "?" + query


# With the standard library, a JSON body keeps its original text (spliced into the event by
# serialize_event) only past this size: below it, re-encoding the parsed value costs less.
# Measured per event on CPython's encoder (valgrind): splicing the Flask GET's 79-byte body
# costs 9k instructions more than re-encoding it; splicing the POST's 1 KB body saves 21k, a
# 95 KB body 13M.
_SPLICE_MIN_BYTES = 1000


class EventBuilder:
    """Turns ExchangeRecords into wire events (plain dicts ready for ``serialize_event``).

    ``fingerprint_key`` keys the HMAC of masked header values (see HeaderMasker). Events carry
    ``body`` and ``transfer_encoding`` only when there is a body: the keys are left out, not
    null. ``transaction_id`` is left out when there is none (transaction ids disabled). A JSON
    body keeps its original text (an ``orjson.Fragment`` or a ``JsonDocument``, see bodies.py),
    unless MASK_EVENT_MODEL is set, in which case it is the plain parsed value the hook can edit.
    """

    def __init__(self, settings: Settings, fingerprint_key: bytes) -> None:
        self._settings = settings
        # Header-name options are lower-case already: the schema normalises them.
        self._user_id_field = settings.authorization_user_id_field.lower()
        # Credential fields (docs/protocol.md, "Masking"), lower-case: matched without regard
        # to case in query strings and in JSON and form bodies.
        fields = SENSITIVE_FIELDS if settings.mask_sensitive_fields else frozenset()
        fields = fields | _lower(settings.field_masks)
        self._query_masks = field_names(fields)
        self._request_body_masks = fields | _lower(settings.request_body_masks)
        self._response_body_masks = fields | _lower(settings.response_body_masks)
        # The hook edits parsed bodies, so their original text would be stale.
        self._keep_text = settings.mask_event_model is None
        self._client_ip = ClientIpResolver(settings.trusted_proxies, settings.trusted_proxy_header)
        self._request_masker = HeaderMasker(
            settings.mask_sensitive_headers, settings.request_header_masks, fingerprint_key
        )
        self._response_masker = HeaderMasker(
            settings.mask_sensitive_headers, settings.response_header_masks, fingerprint_key
        )
        if settings.mask_event_model is not None:
            # Fail at start-up, not once per event, when the optional dependency is missing.
            try:
                import moesifapi.models  # type: ignore[import-untyped]  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    "MASK_EVENT_MODEL needs the moesifapi package: "
                    "pip install 'moesif-integrations[moesifapi]'"
                ) from exc

    def build(self, record: ExchangeRecord) -> Dict[str, Any]:
        """The wire event of ``record``. Raises MaskEventError when MASK_EVENT_MODEL fails."""
        settings = self._settings
        transaction_id = None if settings.disabled_transaction_id else record.transaction_id
        request_headers = join_headers(record.request_headers, record.request_headers_cgi)
        incoming = record.direction == "Incoming"
        if transaction_id and incoming:
            # A client's own id is replaced by the one this event carries (an outgoing call
            # is recorded as the app made it).
            request_headers.replace(TRANSACTION_HEADER, transaction_id)
        response_headers = join_headers(record.response_headers, False)

        user_id = record.user_id
        if user_id is None:
            user_id = self._user_id(request_headers)

        request_body = response_body = None
        if settings.log_body if incoming else settings.log_body_outgoing:
            if record.request_body is not None:
                request_body = self._body(
                    record.request_body,
                    record.request_body_size,
                    settings.request_max_body_size,
                    request_headers,
                    self._request_body_masks,
                )
            if record.response_body is not None and _may_have_body(record.method, record.status):
                response_body = self._body(
                    record.response_body,
                    record.response_body_size,
                    settings.response_max_body_size,
                    response_headers,
                    self._response_body_masks,
                )

        request_time, response_time = format_times(record.request_time, record.response_time)
        # Headers are masked last: identity and the bodies' content types read them as received.
        request: Dict[str, Any] = {
            "time": request_time,
            "uri": build_uri(
                record.scheme,
                record.host,
                record.path,
                mask_urlencoded(record.query, self._query_masks),
            ),
            "verb": record.method,
            "headers": self._request_masker.mask(request_headers),
            "api_version": settings.api_version,
            "ip_address": self._client_ip.resolve(record.remote_addr, request_headers),
        }
        if request_body is not None:
            request["body"], request["transfer_encoding"] = request_body
        response: Dict[str, Any] = {
            "time": response_time,
            "status": record.status,
            "headers": self._response_masker.mask(response_headers),
        }
        if response_body is not None:
            response["body"], response["transfer_encoding"] = response_body

        event: Dict[str, Any] = {
            "request": request,
            "response": response,
            "session_token": record.session_token,
            "user_id": user_id,
            "company_id": record.company_id,
            "metadata": _metadata(record.metadata),
            "direction": record.direction,
            "weight": record.weight,
            "blocked_by": record.blocked_by,
        }
        if transaction_id:
            event["transaction_id"] = transaction_id
        if settings.mask_event_model is not None:
            event = apply_mask_event_model(settings.mask_event_model, event)
        return event

    def _user_id(self, headers: IndexedHeaders) -> Optional[str]:
        """The user id carried by the first of AUTHORIZATION_HEADER_NAME present."""
        for name in self._settings.authorization_header_name:
            value = headers.find(name)
            if value is not None:
                return user_id_from_value(value, self._user_id_field)
        return None

    def _body(
        self,
        data: bytes,
        size: int,
        limit: int,
        headers: IndexedHeaders,
        masks: FrozenSet[str],
    ) -> Optional[Tuple[Any, str]]:
        """(body, transfer_encoding) of one side of the exchange; None when there is none."""
        body, transfer_encoding = encode_body(
            data,
            size,
            limit,
            headers.find("content-type"),
            headers.find("content-encoding"),
            masks,
            self._keep_text and (json_backend.orjson is not None or len(data) > _SPLICE_MIN_BYTES),
        )
        return None if transfer_encoding is None else (body, transfer_encoding)


def _may_have_body(method: str, status: int) -> bool:
    """Whether the response carries a body on the wire (RFC 9110): none to HEAD, none with 1xx,
    204 or 304, whatever the app gave the server."""
    return method != "HEAD" and status >= 200 and status != 204 and status != 304


def _lower(names: Tuple[str, ...]) -> FrozenSet[str]:
    return frozenset(name.lower() for name in names)


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

    def __init__(self, settings: Settings, counters: Counters) -> None:
        self.counters = counters
        self._problems = LogOnce()
        self.builder = EventBuilder(settings, fingerprint_key=fingerprint_key(settings))

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
            error = exc
        if event.get("metadata") is not None:
            # Metadata JSON cannot hold is left out, as a non-dict is; the event still goes.
            event["metadata"] = None
            try:
                data = serialize_event(event)
            except UnserializableEventError:
                pass
            else:
                self._problems.log(
                    "metadata-unserializable",
                    logging.WARNING,
                    "event metadata could not be serialised to JSON (%s); sent without metadata",
                    error,
                )
                return data
        self.counters.add("dropped_unserializable")
        self._problems.log(
            "unserializable",
            logging.WARNING,
            "an event could not be serialised to JSON (%s); it was dropped",
            error,
        )
        return None


# Drawn once per process (a forked worker inherits its parent's): without
# MASK_FINGERPRINT_KEY, fingerprints match only within the processes that share it.
_PROCESS_FINGERPRINT_KEY = os.urandom(32)


def fingerprint_key(settings: Settings) -> bytes:
    """The key of header fingerprints: a secret nobody who sees the events holds, so that a
    fingerprint cannot confirm a guessed credential (the application id travels with every
    batch, so it cannot be the key). MASK_FINGERPRINT_KEY when set (the same fingerprints in
    every process and after restarts), else a random key of this process."""
    if not settings.mask_fingerprint_key:
        return _PROCESS_FINGERPRINT_KEY
    return hashlib.sha256(
        b"moesif-integrations/header-fingerprint/" + settings.mask_fingerprint_key.encode("utf-8")
    ).digest()
