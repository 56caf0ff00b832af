"""What the request path needs from the pipeline behind it, and nothing more.

The capture layer records facts and hands them on; it never imports delivery. ``Pipeline``
(``core/pipeline.py``) is the one implementation; tests may supply their own.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ..config.schema import Settings
from ..decide.decisions import Decisions
from ..record import ExchangeRecord


class CaptureSink(Protocol):
    """The request path's view of its pipeline."""

    settings: Settings

    def call_hook(self, name: str, hook: Callable[..., Any], *args: Any) -> Any:
        """A user hook's answer; an exception is counted, logged and means None."""

    def capture_failed(self, where: str) -> None:
        """A bug or bad input in the capture itself: counted, logged; the app is unaffected."""

    def skip(self) -> None:
        """SKIP (or a route's own switch) said not to record this exchange."""

    def decisions(self) -> Decisions:
        """The sampling and governance rules in force, read once per exchange before the app
        runs; never waits."""

    def sampled_out(self) -> None:
        """Sampling dropped an exchange before it was recorded."""

    def submit(self, record: ExchangeRecord) -> None:
        """The finished record, once per exchange; sampling is decided here unless the record
        says it was decided already (``record.sample_rate``)."""
