"""MASK_EVENT_MODEL: the user's hook sees a moesifapi ``EventModel``, as under moesifwsgi.

moesifapi is imported only when the hook is set. Its ``to_dictionary()`` is lossy both ways
(it adds ``tags`` and ``response.ip_address`` as null, and drops fields its models do not
know), so the round trip here puts back exactly what the event had, plus what the hook set.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

from .bodies import JsonDocument

# Constructor keywords of moesifapi's models; anything else in our dicts rides around them.
_EVENT_FIELDS = (
    "session_token",
    "tags",
    "user_id",
    "company_id",
    "metadata",
    "direction",
    "weight",
    "blocked_by",
    "transaction_id",
)
_REQUEST_FIELDS = (
    "time",
    "uri",
    "verb",
    "headers",
    "api_version",
    "ip_address",
    "body",
    "transfer_encoding",
)
_RESPONSE_FIELDS = ("time", "status", "headers", "body", "ip_address", "transfer_encoding")


class MaskEventError(Exception):
    """MASK_EVENT_MODEL raised or returned no event; the event must be dropped (fails closed)."""


def _pick(source: Dict[str, Any], fields: Tuple[str, ...]) -> Dict[str, Any]:
    picked = {name: source[name] for name in fields if name in source}
    body = picked.get("body")
    if isinstance(body, JsonDocument):
        picked["body"] = body.value  # the hook edits values, not text
    return picked


def to_event_model(event: Dict[str, Any]) -> Any:
    """The wire event as a moesifapi ``EventModel`` (attribute access, mutable in place)."""
    from moesifapi.models import (  # type: ignore[import-untyped]
        EventModel,
        EventRequestModel,
        EventResponseModel,
    )

    request = EventRequestModel(**_pick(event.get("request") or {}, _REQUEST_FIELDS))
    response = EventResponseModel(**_pick(event.get("response") or {}, _RESPONSE_FIELDS))
    model = EventModel(request=request, response=response, **_pick(event, _EVENT_FIELDS))
    # EventModel invents a UUID for a missing transaction id; keep "none" as none.
    model.transaction_id = event.get("transaction_id")
    return model


def _merge_back(converted: Dict[str, Any], original: Dict[str, Any]) -> Dict[str, Any]:
    """``converted`` with the fields the model does not know put back from ``original``, and
    without the nulls the model adds for fields the event never had."""
    for key, value in original.items():
        if key not in converted:
            converted[key] = value
    for key in [k for k, v in converted.items() if v is None and k not in original]:
        del converted[key]
    return converted


def from_event_model(model: Any, original: Dict[str, Any]) -> Dict[str, Any]:
    """The event dict of a (possibly changed) ``EventModel``."""
    converted = model.to_dictionary()
    if not isinstance(converted, dict):
        raise MaskEventError("to_dictionary() did not give a dict")
    for part in ("request", "response"):
        section = converted.get(part)
        if not isinstance(section, dict):
            raise MaskEventError(f"the masked event has no {part} object")
        original_section = original.get(part)
        _merge_back(section, original_section if isinstance(original_section, dict) else {})
    return _merge_back(converted, original)


def apply_mask_event_model(hook: Callable[[Any], Any], event: Dict[str, Any]) -> Dict[str, Any]:
    """Runs MASK_EVENT_MODEL on ``event``. Raises MaskEventError if the hook raises, returns
    something that is not an event model, or breaks the model so it cannot be converted."""
    try:
        model = to_event_model(event)
    except Exception as exc:
        raise MaskEventError(f"could not build the EventModel: {type(exc).__name__}") from exc
    try:
        result: Optional[Any] = hook(model)
    except Exception as exc:
        raise MaskEventError(f"MASK_EVENT_MODEL raised {type(exc).__name__}") from exc
    if result is None or not callable(getattr(result, "to_dictionary", None)):
        raise MaskEventError(
            f"MASK_EVENT_MODEL returned {type(result).__name__}, not the event model"
        )
    try:
        return from_event_model(result, event)
    except MaskEventError:
        raise
    except Exception as exc:
        raise MaskEventError(
            f"the masked event could not be converted: {type(exc).__name__}"
        ) from exc
