"""Instructions per event in the app's process with sender threads (the default): the request
path, and the request path plus the in-process delivery (building, JSON, gzip, HTTP to a local
collector), on the Flask app.

    python benchmarks/delivery_instructions.py [--integration generic|ours] [--request GET|POST]
        [--events N] [--json PATH]

Three figures, each the difference between two valgrind runs of the same app that differ only in
the number of requests made after the same warm-up (start-up and imports cancel out):

- bare: instructions per request of the bare app;
- request path: the wrapped app with its senders asleep (``request_path.instructions_per_request``,
  the figure of ``overhead.py --instructions``);
- request path + delivery: the wrapped app at its defaults (100 events a batch, two sender
  threads), every batch sent to the collector (a process of its own, not counted) and flushed
  before the run ends. Only the batch timeout is raised, so that the slowness of valgrind never
  sends a partial batch: batches are full, as under load.

Delivery per event is the last minus the request path. The instructions are turned into
microseconds at the bare app's own pace: its CPU time per request (``time.thread_time``, median
of blocks, measured here without valgrind) over its instructions per request.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from statistics import median
from typing import Any, Dict, List, Optional, Sequence

# Run as a script: the sibling modules are importable from this directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apps import FRAMEWORKS, BenchSettings  # noqa: E402
from collector_process import CollectorProcess  # noqa: E402
from drivers import REQUESTS  # noqa: E402
from measure import make_driver  # noqa: E402
from request_path import count_instructions, instructions_per_request  # noqa: E402

_WARM_UP_EVENTS = 200
# Far longer than any counted run under valgrind: a batch goes when it holds BATCH_SIZE events.
_BATCH_TIMEOUT = 3600.0

_COUNTED_RUN = """
import os, sys
sys.path.insert(0, {benchmarks!r})
from apps import FRAMEWORKS, BenchSettings
from drivers import REQUESTS
from measure import make_driver
framework = next(f for f in FRAMEWORKS if f.name == "flask")
built = framework.build({integration!r}, BenchSettings({url!r}, batch_timeout={timeout!r}))
driver = make_driver(built, next(r for r in REQUESTS if r.name == {request!r}))
driver.run({warm_up})
assert built.integration.flush(600.0), "warm-up events not delivered"
driver.run({count})
assert built.integration.flush(600.0), "counted events not delivered"
os._exit(0)  # no at-exit flush or shutdown: only the requests and their delivery differ
"""


def delivered_instructions(
    collector: CollectorProcess, integration: str, request: str, count: int
) -> int:
    """Instructions of one counted run; checks that the collector got every event."""
    collector.client.reset()
    script = _COUNTED_RUN.format(
        benchmarks=os.path.dirname(os.path.abspath(__file__)),
        integration=integration,
        url=collector.url,
        timeout=_BATCH_TIMEOUT,
        request=request,
        warm_up=_WARM_UP_EVENTS,
        count=count,
    )
    instructions = count_instructions(script)
    received = collector.client.event_count()
    if received != _WARM_UP_EVENTS + count:
        raise RuntimeError(f"the collector got {received} of {_WARM_UP_EVENTS + count} events")
    return instructions


def bare_cpu_us(request: str, blocks: int = 15, block: int = 800) -> float:
    """The bare Flask app's CPU time per request on this thread: median of ``blocks`` blocks."""
    framework = next(f for f in FRAMEWORKS if f.name == "flask")
    spec = next(r for r in REQUESTS if r.name == request)
    driver = make_driver(framework.build("bare", BenchSettings("http://127.0.0.1:9")), spec)
    driver.run(block)
    times: List[float] = []
    for _ in range(blocks):
        gc.collect()
        began = time.thread_time()
        driver.run(block)
        times.append((time.thread_time() - began) / block * 1e6)
    driver.close()
    return median(times)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--integration", default="generic", choices=("generic", "ours"))
    parser.add_argument("--request", default="GET", choices=[r.name for r in REQUESTS])
    parser.add_argument(
        "--events", type=int, default=1000, help="events counted (a multiple of 100)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    arguments = parser.parse_args(argv)
    if arguments.events <= 0 or arguments.events % 100:
        parser.error("--events must be a positive multiple of the batch size, 100")
    integration, request, events = arguments.integration, arguments.request, arguments.events
    # Every counted run (they inherit the environment) hashes alike: the same figure each time.
    os.environ["PYTHONHASHSEED"] = "0"

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    bare = instructions_per_request("flask", "bare", request)
    progress(f"bare: {bare:,.0f} instructions per request")
    request_path = instructions_per_request("flask", integration, request) - bare
    progress(f"request path: +{request_path:,.0f}")
    with CollectorProcess("delivery-instructions") as collector:
        runs = [
            delivered_instructions(collector, integration, request, count) for count in (0, events)
        ]
    whole = (runs[1] - runs[0]) / events - bare
    progress(f"request path + delivery: +{whole:,.0f}")
    pace = bare_cpu_us(request) / bare  # µs per instruction at the bare app's pace
    figures: Dict[str, Any] = {
        "integration": integration,
        "request": request,
        "events": events,
        "bare_instructions": bare,
        "bare_cpu_us": bare * pace,
        "request_path_instructions": request_path,
        "delivery_instructions": whole - request_path,
        "added_instructions": whole,
    }
    rows = [
        ("bare app, per request", bare),
        ("request path, added per request", request_path),
        ("delivery in the app's process, per event", whole - request_path),
        ("request path + delivery, added per event", whole),
    ]
    lines = [
        f"Flask {request}, `{integration}`, sender threads, {events:,} events counted; "
        f"µs at the bare app's pace ({bare * pace:.1f} µs for {bare:,.0f} instructions)",
        "",
        "| | instructions | µs |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {value:,.0f} | {value * pace:.1f} |" for name, value in rows]
    print("\n".join(lines))
    if arguments.json:
        with open(arguments.json, "w", encoding="utf-8") as file:
            json.dump(figures, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
