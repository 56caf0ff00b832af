"""Event timestamps: UTC, ISO 8601 with milliseconds and no zone, as the collector expects."""

from __future__ import annotations

import math
import time
from typing import Tuple

# (whole second, its "YYYY-MM-DDTHH:MM:SS." text): consecutive events mostly share a second, so
# the calendar arithmetic runs about once a second. A tuple swap is atomic, hence thread-safe.
_last: Tuple[int, str] = (-(2**62), "")
# "000" to "999": indexing beats formatting the milliseconds on every call.
_MILLIS = tuple(f"{millis:03d}" for millis in range(1000))
_floor = math.floor

# (low, high, text): every epoch from low to high formats as text. Under load, an event's two
# times and the next event's times mostly fall in the millisecond last formatted, and two
# comparisons beat the arithmetic. The bounds stay 2 us inside that millisecond; computing
# them is off by at most one float step of the epoch (0.24 us now, under 1 us before
# _HOT_LIMIT, the year 2106), so every time between them rounds to a microsecond of that
# millisecond. Later epochs, whose float steps are coarser, are not remembered.
_hot: Tuple[float, float, str] = (1.0, 0.0, "")
_HOT_LIMIT = 2**32


def format_time(epoch: float) -> str:
    """``time.time()`` seconds as ``"2026-11-25T20:05:15.585"`` (UTC, milliseconds).

    Gives exactly what ``datetime.fromtimestamp(epoch, timezone.utc)`` would print with
    ``timespec="milliseconds"``: the fraction is first rounded to microseconds (half to even),
    then cut to milliseconds. About 0.2 us when the second is cached, against 1.5 us for
    ``datetime`` plus ``isoformat``.
    """
    global _last, _hot
    second = _floor(epoch)
    micros = round((epoch - second) * 1e6)
    if micros >= 1_000_000:
        second += 1
        micros -= 1_000_000
    cached_second, prefix = _last
    if second != cached_second:
        t = time.gmtime(second)
        prefix = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
            f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
        )
        _last = (second, prefix)
    millis = micros // 1000
    text = prefix + _MILLIS[millis]
    if 0 <= second < _HOT_LIMIT:
        start = second + millis * 1e-3
        _hot = (start + 2e-6, start + 997e-6, text)
    return text


def format_times(first: float, second: float) -> Tuple[str, str]:
    """``(format_time(first), format_time(second))``: an event's request and response times."""
    low, high, text = _hot
    first_text = text if low <= first <= high else format_time(first)
    low, high, text = _hot
    return first_text, text if low <= second <= high else format_time(second)
