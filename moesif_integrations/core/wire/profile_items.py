"""Users, companies, subscriptions and actions: what callers pass -> checked wire JSON objects.

Callers hand over dicts with the field names of docs/protocol.md ("Users, companies,
subscriptions, actions"), moesifapi model objects (anything with a ``to_dictionary()`` method),
or JSON text of an object, as moesifapi accepted. A missing required field is the caller's
programming error and raises ValueError at once; everything else about delivery is the sender's
business.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Tuple

from .times import format_time


@dataclass(frozen=True)
class ProfileKind:
    """One of the collector's non-event item kinds and where it is posted."""

    name: str  # "users": also the counter and log wording
    path: str  # POST one item
    batch_path: str  # POST a JSON array of items
    required: Tuple[str, ...]  # top-level fields that must be present and non-empty

    @property
    def singular(self) -> str:
        return self.name[:-3] + "y" if self.name.endswith("ies") else self.name[:-1]


USERS = ProfileKind("users", "/v1/users", "/v1/users/batch", ("user_id",))
COMPANIES = ProfileKind("companies", "/v1/companies", "/v1/companies/batch", ("company_id",))
SUBSCRIPTIONS = ProfileKind(
    "subscriptions",
    "/v1/subscriptions",
    "/v1/subscriptions/batch",
    ("subscription_id", "company_id"),
)
ACTIONS = ProfileKind("actions", "/v1/actions", "/v1/actions/batch", ("action_name",))


def wire_item(kind: ProfileKind, item: Any, where: str = "") -> Dict[str, Any]:
    """A plain JSON-ready dict for one item; raises ValueError (missing field, JSON text that is
    not an object) or TypeError (not a dict, model or JSON text). ``where`` prefixes messages,
    e.g. ``"users[3]: "`` for an item of a batch.

    Datetimes and dates stay as they are here; the serialiser writes them as ISO 8601 strings.
    Top-level and campaign fields set to None are left out ("unset"), as docs/protocol.md allows,
    so an update never sends an explicit null for a field the caller did not set on a model
    object.
    """
    fields = _as_dict(kind, item, where)
    result = {str(key): _plain(value) for key, value in fields.items() if value is not None}
    campaign = result.get("campaign")
    if isinstance(campaign, dict):
        # A moesifapi CampaignModel lists all eight utm fields, mostly None: unset as well.
        result["campaign"] = {key: value for key, value in campaign.items() if value is not None}
    for name in kind.required:
        if _is_missing(result.get(name)):
            raise ValueError(f"{where}a {kind.singular} needs {name}; it is missing or empty")
    if kind is ACTIONS:
        _stamp_action_time(result)
    return result


def wire_items(kind: ProfileKind, items: Any) -> List[Dict[str, Any]]:
    """``wire_item`` for each item of a list (or other non-text iterable), all checked before any
    is used, so a bad batch is refused whole."""
    if isinstance(items, (str, bytes, bytearray, dict)) or not isinstance(items, Iterable):
        raise TypeError(
            f"a batch of {kind.name} must be a list of dicts or model objects, "
            f"not {type(items).__name__}"
        )
    return [wire_item(kind, item, f"{kind.name}[{index}]: ") for index, item in enumerate(items)]


def _as_dict(kind: ProfileKind, item: Any, where: str) -> Dict[Any, Any]:
    if isinstance(item, dict):
        return item
    to_dictionary = getattr(item, "to_dictionary", None)
    if callable(to_dictionary):
        converted = to_dictionary()
        if isinstance(converted, dict):
            return converted
    elif isinstance(item, (str, bytes, bytearray)):
        # moesifapi accepted a profile as JSON text; keep that working.
        try:
            parsed = json.loads(item)
        except ValueError:
            raise ValueError(f"{where}a {kind.singular} given as text must be JSON") from None
        if isinstance(parsed, dict):
            return parsed
        raise ValueError(f"{where}a {kind.singular} given as JSON text must be a JSON object")
    raise TypeError(
        f"{where}a {kind.singular} must be a dict, a moesifapi model or JSON text, "
        f"not {type(item).__name__}"
    )


def _plain(value: Any) -> Any:
    """Model objects nested anywhere (a CampaignModel, items of a subscription) become dicts;
    containers are copied, so later changes by the caller do not reach the queued item."""
    if isinstance(value, dict):
        return {str(key): _plain(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(inner) for inner in value]
    if isinstance(value, (str, int, float, bool, datetime.date, datetime.time)) or value is None:
        return value
    to_dictionary = getattr(value, "to_dictionary", None)
    if callable(to_dictionary):
        return _plain(to_dictionary())
    return value  # the serialiser knows Decimal, UUID, bytes, sets, or reports the item


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _stamp_action_time(action: Dict[str, Any]) -> None:
    # Delivery is asynchronous, so the collector's arrival time would be late: an action
    # without a time gets the time of the call.
    request = action.get("request")
    if request is None:
        action["request"] = {"time": format_time(time.time())}
    elif isinstance(request, dict) and _is_missing(request.get("time")):
        request["time"] = format_time(time.time())
