"""Raw exchange record -> wire event (PROTOCOL.md, "The event"). Runs on the worker threads.

The order matters: identity is read from the headers as received, then bodies are encoded
and body masks applied, then header masks, then the user's MASK_EVENT_MODEL sees the result.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple

from .bodies import FAST_JSON, encode_body
from .event_json import UnserializableEventError, serialize_event
from .event_model import MaskEventError, apply_mask_event_model
from .headers import HeaderMasker, fix_text, join_headers_indexed
from .identity import ClientIpResolver, IPNetwork, user_id_from_authorization
from .logs import LogOnce
from .record import ExchangeRecord
from .timefmt import format_time

__all__ = [
    "EventBuilder",
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
    host = fix_text(host)
    if scheme == "http" and host.endswith(":80"):
        host = host[:-3]
    elif scheme == "https" and host.endswith(":443"):
        host = host[:-4]
    uri = scheme + "://" + host + (_quote(path, _PATH_UNSAFE_TEXT, _PATH_UNSAFE_BYTES) or "/")
    if query:
        uri += "?" + _quote(query, _QUERY_UNSAFE_TEXT, _QUERY_UNSAFE_BYTES)
    return uri


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
    body is a ``JsonDocument`` (parsed value plus original text, see bodies.py) unless
    MASK_EVENT_MODEL is set, in which case it is the plain parsed value the hook can edit.
    """

    def __init__(self, options: EventOptions, fingerprint_key: bytes) -> None:
        self._options = options
        # The hook edits parsed bodies, so their original text would be stale.
        self._keep_text = options.mask_event_model is None
        self._client_ip = ClientIpResolver(options.trusted_proxies)
        self._request_masker = HeaderMasker(
            options.mask_sensitive_headers, options.request_header_masks, fingerprint_key
        )
        self._response_masker = HeaderMasker(
            options.mask_sensitive_headers, options.response_header_masks, fingerprint_key
        )
        if options.mask_event_model is not None:
            # Fail at start-up, not once per event, when the optional dependency is missing.
            try:
                import moesifapi.models  # type: ignore[import-untyped]  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    "MASK_EVENT_MODEL needs the moesifapi package: "
                    "pip install 'moesif-integrations[moesifapi]'"
                ) from exc

    def _keeps_text(self, body: bytes) -> bool:
        """Whether a JSON body goes out as its own text rather than re-encoded."""
        return self._keep_text and (_FAST_JSON or len(body) > _SPLICE_MIN_BYTES)

    def build(self, record: ExchangeRecord) -> Dict[str, Any]:
        """The wire event of ``record``. Raises MaskEventError when MASK_EVENT_MODEL fails."""
        options = self._options
        transaction_id = None if options.disabled_transaction_id else record.transaction_id

        request_headers, request_index = join_headers_indexed(
            record.request_headers, record.request_headers_cgi
        )
        if transaction_id:
            spelt = request_index.get(_TRANSACTION_HEADER_LOWER)
            if spelt is not None:
                del request_headers[spelt]  # a client's own id: replaced by the one we use
            request_headers[TRANSACTION_HEADER] = transaction_id
            request_index[_TRANSACTION_HEADER_LOWER] = TRANSACTION_HEADER
        response_headers, response_index = join_headers_indexed(record.response_headers, False)

        user_id = record.user_id
        if user_id is None and options.authorization_header_names:
            user_id = user_id_from_authorization(
                request_headers,
                options.authorization_header_names,
                options.authorization_user_id_field,
            )

        request: Dict[str, Any] = {
            "time": format_time(record.request_time),
            "uri": build_uri(record.scheme, record.host, record.path, record.query),
            "verb": record.method,
            "headers": request_headers,
            "api_version": options.api_version,
            "ip_address": self._client_ip.resolve(record.remote_addr, request_headers),
        }
        response: Dict[str, Any] = {
            "time": format_time(record.response_time),
            "status": record.status,
            "headers": response_headers,
        }
        if options.log_body:
            if record.request_body is not None:
                _add_body(
                    request,
                    record.request_body,
                    record.request_body_size,
                    options.request_max_body_size,
                    request_headers,
                    request_index,
                    options.request_body_masks,
                    self._keep_text
                    and (_FAST_JSON or len(record.request_body) > _SPLICE_MIN_BYTES),
                )
            if record.response_body is not None:
                _add_body(
                    response,
                    record.response_body,
                    record.response_body_size,
                    options.response_max_body_size,
                    response_headers,
                    response_index,
                    options.response_body_masks,
                    self._keep_text
                    and (_FAST_JSON or len(record.response_body) > _SPLICE_MIN_BYTES),
                )
        # Masking last: identity and the bodies' content types read the headers as received.
        request["headers"] = self._request_masker.mask(request_headers)
        response["headers"] = self._response_masker.mask(response_headers)

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
        if options.mask_event_model is not None:
            event = apply_mask_event_model(options.mask_event_model, event)
        return event


def _add_body(
    section: Dict[str, Any],
    data: bytes,
    size: int,
    limit: int,
    headers: Dict[str, str],
    index: Dict[str, str],
    masks: FrozenSet[str],
    keep_text: bool,
) -> None:
    content_type_key = index.get("content-type")
    encoding_key = index.get("content-encoding")
    body, transfer_encoding = encode_body(
        data,
        size,
        limit,
        None if content_type_key is None else headers[content_type_key],
        None if encoding_key is None else headers[encoding_key],
        masks,
        keep_text,
    )
    if transfer_encoding is not None:
        section["body"] = body
        section["transfer_encoding"] = transfer_encoding


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
