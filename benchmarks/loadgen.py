"""The load generator ``servers.py`` falls back to where ``wrk`` is not installed.

    python benchmarks/loadgen.py URL --connections 8 --duration 10 [--body FILE] [-H "Name: v"]

Runs in a process of its own: ``--connections`` threads, each with one keep-alive connection
(a new one whenever the server closes it), sending the same request back to back for
``--duration`` seconds. Prints one JSON line: requests completed, seconds, and the 50th and
99th percentile latency in milliseconds. Python threads share one GIL, so it saturates sooner
than ``wrk``: its figures are for comparing rows of one run, not with ``wrk``'s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from typing import Dict, List, Optional, Sequence
from urllib.parse import urlsplit


def _worker(
    url: str,
    method: str,
    body: Optional[bytes],
    headers: Dict[str, str],
    until: float,
    latencies: List[float],
    errors: List[int],
) -> None:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    while True:
        started = time.perf_counter()
        if started >= until:
            break
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.will_close:
                conn.close()
        except (OSError, http.client.HTTPException):
            conn.close()
            errors.append(1)
            continue
        latencies.append(time.perf_counter() - started)
    conn.close()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", help="file holding the request body")
    parser.add_argument("-H", dest="headers", action="append", default=[])
    args = parser.parse_args(argv)
    body = None
    if args.body:
        with open(args.body, "rb") as file:
            body = file.read()
    headers = dict(h.split(": ", 1) for h in args.headers)
    per_thread: List[List[float]] = [[] for _ in range(args.connections)]
    errors: List[int] = []
    started = time.perf_counter()
    until = started + args.duration
    threads = [
        threading.Thread(
            target=_worker, args=(args.url, args.method, body, headers, until, kept, errors)
        )
        for kept in per_thread
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(x for kept in per_thread for x in kept)

    def percentile(share: float) -> float:
        if not latencies:
            return 0.0
        return 1000 * latencies[min(len(latencies) - 1, int(share * len(latencies)))]

    print(
        json.dumps(
            {
                "requests": len(latencies),
                "seconds": elapsed,
                "p50_ms": percentile(0.50),
                "p99_ms": percentile(0.99),
                "errors": len(errors),
            }
        )
    )


if __name__ == "__main__":
    main()
