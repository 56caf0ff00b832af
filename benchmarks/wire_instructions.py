"""Instructions per event on the sender threads: EventEncoder.encode (build and serialise one
event) over the records the Flask extension queues for the benchmark's GET and POST.

    python benchmarks/wire_instructions.py [--stdlib] [--events N]

Each record is copied N times, 0.25 ms apart and with fresh transaction ids (what a sender sees
under load). valgrind counts two runs that differ only in whether the copies are encoded; the
difference over N is the figure, the same on every run of the same code.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

from drivers import REQUESTS
from request_path import count_instructions

_COUNTED_RUN = """
import copy, gc, os, sys, uuid
sys.path.insert(0, {benchmarks!r})
from apps import FRAMEWORKS, BenchSettings
from drivers import REQUESTS
from request_path import count_instructions
from measure import make_driver
from moesif_integrations.core import json_backend
if {stdlib}:
    json_backend.orjson = None
flask = next(f for f in FRAMEWORKS if f.name == "flask")
settings = BenchSettings("http://127.0.0.1:9", batch_size=1000, batch_timeout=600.0)
built = flask.build("ours", settings)
pipeline = built.app.extensions["moesif"].pipeline
kept = []
pipeline.delivery.put = lambda record: kept.append(record) or True
make_driver(built, next(r for r in REQUESTS if r.name == {request!r})).check()
template = kept[-1]
records = []
for i in range({warm_up} + {events}):
    record = copy.copy(template)
    record.transaction_id = txn = str(uuid.UUID(int=i + 1, version=4))
    record.response_headers = [
        (name, txn if name == "X-Moesif-Transaction-Id" else value)
        for name, value in template.response_headers
    ]
    record.request_time = 1764101115.0001 + i * 0.00025
    record.response_time = record.request_time + 0.0007
    records.append(record)
encode = pipeline.encoder.encode
gc.collect()
gc.freeze()  # the records themselves are not the encoder's to traverse
for record in records[:{warm_up}]:
    assert encode(record)
if {counted}:
    for record in records[{warm_up}:]:
        encode(record)
os._exit(0)
"""
_WARM_UP = 400


def _instructions(request: str, events: int, counted: bool, stdlib: bool) -> int:
    script = _COUNTED_RUN.format(
        benchmarks=os.path.dirname(os.path.abspath(__file__)),
        request=request,
        warm_up=_WARM_UP,
        events=events,
        counted=counted,
        stdlib=stdlib,
    )
    return count_instructions(script, hash_seed="0")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stdlib", action="store_true", help="without orjson")
    parser.add_argument("--events", type=int, default=2000, help="events counted per request")
    arguments = parser.parse_args(argv)
    lines: List[str] = ["| request | instructions per event |", "|---|---:|"]
    for spec in REQUESTS:
        runs = [
            _instructions(spec.name, arguments.events, counted, arguments.stdlib)
            for counted in (False, True)
        ]
        lines.append(f"| {spec.name} | {(runs[1] - runs[0]) / arguments.events:,.0f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
