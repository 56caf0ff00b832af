"""Transaction ids: one UUID per exchange, a client's own id reused only when it is a UUID.

New ids come from the operating system's randomness (``os.urandom``), never from the
process-global ``random`` module: workers that seed ``random`` alike still make distinct ids, and
the app's own seeded ``random`` sequence is the same with or without the capture.
"""

from __future__ import annotations

import os
import re
from typing import List, Optional

_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# Ids are made in batches and handed out from a pool: str(uuid.uuid4()) per request instead
# costs 19,500 instructions more per Flask GET (2.7 µs; benchmarks/overhead.py --instructions).
_BATCH = 64
# A batch is one text of random hex digits, 37 per id (36 characters and a separator); fixed
# columns are then overwritten in C, each by one slice assignment over the whole batch: the
# dashes, the version digit "4", the variant digit (8, 9, a or b) and the separator.
_WIDTH = 37
_DIGITS = _BATCH * _WIDTH  # even: two hex digits per random byte
_DASH_COLUMNS = (8, 13, 18, 23)
_VERSION_COLUMN = 14
_VARIANT_COLUMN = 19
_SEPARATOR_COLUMN = 36
_DASHES = b"-" * _BATCH
_VERSIONS = b"4" * _BATCH
_SEPARATORS = b" " * _BATCH
# The RFC 4122 variant: the two top bits of the 17th hex digit are 10.
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")
_pool: List[str] = []


def _refill() -> None:
    text = bytearray(os.urandom(_DIGITS // 2).hex(), "ascii")
    for column in _DASH_COLUMNS:
        text[column::_WIDTH] = _DASHES
    text[_VERSION_COLUMN::_WIDTH] = _VERSIONS
    text[_VARIANT_COLUMN::_WIDTH] = text[_VARIANT_COLUMN::_WIDTH].translate(_VARIANT)
    text[_SEPARATOR_COLUMN::_WIDTH] = _SEPARATORS
    _pool.extend(text.decode("ascii").split())


def transaction_id_for(client_supplied: Optional[str] = None) -> str:
    """The exchange's transaction id: the client's own X-Moesif-Transaction-Id when it is a
    well-formed UUID, else a new random UUID4."""
    if client_supplied and len(client_supplied) == 36 and _UUID_TEXT.fullmatch(client_supplied):
        return client_supplied.lower()
    while True:
        try:
            return _pool.pop()  # atomic: threads never get the same id
        except IndexError:
            _refill()


def new_transaction_id() -> str:
    """A random UUID4 as text."""
    return transaction_id_for(None)


if hasattr(os, "register_at_fork"):
    # A child must not hand out the ids its parent already made.
    os.register_at_fork(after_in_child=_pool.clear)
