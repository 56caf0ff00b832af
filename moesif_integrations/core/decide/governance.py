"""What a governance rule answers instead of the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import List, Tuple


@dataclass(frozen=True)
class Block:
    """A blocked request's response: status, headers (Content-Type included) and body bytes."""

    rule_id: str
    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def status_line(self) -> str:
        try:
            return f"{self.status} {HTTPStatus(self.status).phrase}"
        except ValueError:
            return f"{self.status} Blocked"
