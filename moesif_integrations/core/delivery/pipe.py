"""What the app's process and its delivery process say to each other over a pair of pipes.

A frame is a 5-byte header (payload length, one kind byte) and a payload. Records cross as
``marshal`` data: the standard library's C-level format for plain values, several times cheaper
than pickle or JSON, and all the app's process has to pay per event. Each record is marshalled
once, when it is queued (``record_bytes``), so that the app's process holds bytes, not objects,
until the hand-off. Only the settings (once, at start) cross as pickle. Both ends are this
package, in processes of the same user.
"""

from __future__ import annotations

import marshal
import os
import struct
from operator import attrgetter
from typing import Any, BinaryIO, Optional, Tuple

from ..record import ExchangeRecord

_HEADER = struct.Struct("!IB")

# App process -> delivery process.
SETTINGS = b"C"  # pickled Settings, hooks removed: the first frame
RECORDS = b"R"  # marshal: a list of record_bytes() values
ENCODED = b"E"  # marshal: a list of events already encoded (MASK_EVENT_MODEL, odd values)
FLUSH = b"F"  # marshal: (request id, timeout in seconds or -1.0 for none)
SHUTDOWN = b"S"  # marshal: timeout in seconds; the app's process closes the pipe next
# Delivery process -> app process.
READY = b"H"  # empty: settings read, the process delivers from now on
STATUS = b"T"  # marshal: {"counters": {...}, "queued": n, "etag": str or None}
LOG = b"L"  # marshal: (level, message): a log line for the app's own logging
FLUSHED = b"D"  # marshal: (request id, delivered, status)
BYE = b"B"  # marshal: (delivered, status), right before the process exits

# The facts every record has (its slots), read in one C-level call, and the ones most records
# leave at their class default (in the record's __dict__ when set): both as record.py declares
# them, so a field added there crosses the pipe too.
_SLOT_FIELDS = tuple(name for name in ExchangeRecord.__slots__ if name != "__dict__")
RARE_FIELDS = frozenset(ExchangeRecord.__annotations__)
_slot_values = attrgetter(*_SLOT_FIELDS)

WireRecord = Tuple[Any, ...]


def record_to_wire(record: ExchangeRecord) -> WireRecord:
    """The record's facts as a tuple of plain values (marshal-able when the values are)."""
    extras = record.__dict__
    if extras and not extras.keys() <= RARE_FIELDS:
        # An adapter's subclass may keep its own things in __dict__: only the facts cross.
        extras = {name: value for name, value in extras.items() if name in RARE_FIELDS}
    return (_slot_values(record), extras or None)


def record_from_wire(wire: WireRecord) -> ExchangeRecord:
    slots, extras = wire
    record = ExchangeRecord.__new__(ExchangeRecord)
    for set_slot, value in zip(_slot_setters, slots):
        set_slot(record, value)
    if extras:
        record.__dict__.update(extras)
    return record


# The slots' own descriptors: a call each, without setattr's name lookup.
_slot_setters = tuple(getattr(ExchangeRecord, name).__set__ for name in _SLOT_FIELDS)


def record_bytes(record: ExchangeRecord) -> bytes:
    """The record as marshal data; ValueError when a value is not a plain one marshal knows
    (a subclass of str in a header, an object in metadata)."""
    return marshal.dumps(record_to_wire(record))


def record_from_bytes(data: bytes) -> ExchangeRecord:
    return record_from_wire(marshal.loads(data))


def dumps(value: Any) -> bytes:
    """marshal.dumps; ValueError for a value marshal does not know (a subclass, an object)."""
    return marshal.dumps(value)


def loads(payload: bytes) -> Any:
    return marshal.loads(payload)


def write_frame(fd: int, kind: bytes, payload: bytes = b"") -> None:
    """Writes one whole frame to a blocking file descriptor (the GIL is released meanwhile)."""
    data = memoryview(_HEADER.pack(len(payload), kind[0]) + payload)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def read_frame(stream: BinaryIO) -> Optional[Tuple[bytes, bytes]]:
    """The next (kind, payload); None at the end of the stream (the other side is gone)."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    length, kind = _HEADER.unpack(header)
    payload = _read_exactly(stream, length) if length else b""
    if payload is None:
        return None
    return bytes((kind,)), payload


def _read_exactly(stream: BinaryIO, size: int) -> Optional[bytes]:
    data = stream.read(size)
    while data and len(data) < size:  # a raw pipe returns what has arrived so far
        more = stream.read(size - len(data))
        if not more:
            return None
        data += more
    return data if data else None
