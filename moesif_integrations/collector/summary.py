"""One stored item in a few fields: what the inspector's rows, ``tail`` and the demo show."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Dict, Mapping, Optional
from urllib.parse import urlsplit

from moesif_integrations.collector.storage import KEY_FIELDS, StoredItem


def _event_time(text: Any) -> Optional[datetime]:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.rstrip("Z"))
    except ValueError:
        return None


def _part(event: Any, name: str) -> Dict[str, Any]:
    value = event.get(name) if isinstance(event, dict) else None
    return value if isinstance(value, dict) else {}


def duration_ms(event: Any) -> Optional[int]:
    """Milliseconds from the request's time to the response's; None when either is missing."""
    started = _event_time(_part(event, "request").get("time"))
    ended = _event_time(_part(event, "response").get("time"))
    if started is None or ended is None:
        return None
    return round((ended - started).total_seconds() * 1000)


def path_of(event: Any) -> str:
    """The path of the request's URI (no scheme, host or query)."""
    return urlsplit(str(_part(event, "request").get("uri") or "")).path


def _header(headers: Any, name: str) -> Optional[str]:
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return str(value)
    return None


def body_size(message: Dict[str, Any]) -> Optional[int]:
    """Bytes of a request or response body: its Content-Length, else the size of the captured
    body (decoded base64, or the JSON text); None when there is no body."""
    length = _header(message.get("headers"), "content-length")
    if length is not None and length.strip().isdigit():
        return int(length)
    body = message.get("body")
    if body is None:
        return None
    if isinstance(body, str):
        if message.get("transfer_encoding") == "base64":
            return len(body.rstrip("=")) * 3 // 4
        return len(body.encode("utf-8"))
    return len(json.dumps(body, separators=(",", ":")).encode("utf-8"))


def body_kind(message: Dict[str, Any]) -> str:
    """``json``, ``base64``, ``truncated`` (over the capture limit) or ``-`` (no body)."""
    body = message.get("body")
    if body is None:
        return "-"
    if isinstance(body, dict) and body.get("moesif_body_truncated") is True:
        return "truncated"
    return str(message.get("transfer_encoding") or "?")


def event_summary(event: Any) -> Dict[str, Any]:
    """The fields of one row of the inspector's event list."""
    request = _part(event, "request")
    response = _part(event, "response")
    fields = event if isinstance(event, dict) else {}
    return {
        "time": request.get("time"),
        "method": request.get("verb"),
        "path": path_of(event),
        "uri": request.get("uri"),
        "status": response.get("status"),
        "user_id": fields.get("user_id"),
        "company_id": fields.get("company_id"),
        "duration_ms": duration_ms(event),
        "request_size": body_size(request),
        "response_size": body_size(response),
        "blocked_by": fields.get("blocked_by"),
        "weight": fields.get("weight"),
        "direction": fields.get("direction"),
        "transaction_id": fields.get("transaction_id"),
    }


def item_summary(kind: str, item: StoredItem) -> Dict[str, Any]:
    """One row of the inspector's list of ``kind``: ids, arrival, and the kind's own fields."""
    row: Dict[str, Any] = {"id": item.id, "received_at": item.received_at, "app_id": item.app_id}
    if kind == "events":
        row.update(event_summary(item.body))
        return row
    body = item.body if isinstance(item.body, dict) else {}
    key = KEY_FIELDS[kind]
    row["key"] = body.get(key)
    row["company_id"] = body.get("company_id")
    row["user_id"] = body.get("user_id")
    row["time"] = body.get("transaction_time") or body.get("modified_time")
    return row


def event_line(received_at: str, app_id: str, event: Any) -> str:
    """One line for a terminal: time, method, path, status, user, company, ms, sizes."""
    row = event_summary(event)

    def cell(value: Any) -> str:
        return "-" if value is None or value == "" else str(value)

    sizes = f"{cell(row['request_size'])}/{cell(row['response_size'])}B"
    blocked = f"  blocked_by={row['blocked_by']}" if row["blocked_by"] else ""
    weight = f"  weight={row['weight']}" if row["weight"] not in (None, 1) else ""
    return (
        f"{received_at[11:23]}  {cell(row['method']):<6} {cell(row['path']):<28} "
        f"{cell(row['status']):>3}  user={cell(row['user_id'])} company={cell(row['company_id'])} "
        f"{cell(row['duration_ms']):>5}ms {sizes:>13}  app={app_id}{blocked}{weight}"
    )
