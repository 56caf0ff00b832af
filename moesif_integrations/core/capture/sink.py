"""What the request path needs from the pipeline behind it, and nothing more.

The capture layer records facts and hands them on; it never imports delivery. ``Pipeline``
(``core/pipeline.py``) is the one implementation; tests may supply their own.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from ..config.schema import Settings
from ..decide.governance import Block
from ..record import ExchangeRecord


class CaptureSink(Protocol):
    """The request path's view of its pipeline."""

    settings: Settings
    # Whether govern() can block anything: request paths skip the call while it is false.
    governs: bool

    def call_hook(self, name: str, hook: Callable[..., Any], *args: Any) -> Any:
        """A user hook's answer; an exception is counted, logged and means None."""

    def capture_failed(self, where: str) -> None:
        """A bug or bad input in the capture itself: counted, logged; the app is unaffected."""

    def skip(self) -> None:
        """SKIP (or a route's own switch) said not to record this exchange."""

    def govern(self, record: ExchangeRecord) -> Optional[Block]:
        """Consulted before the app runs: a Block answers for the app."""

    def submit(self, record: ExchangeRecord) -> None:
        """The finished record, once per exchange."""
