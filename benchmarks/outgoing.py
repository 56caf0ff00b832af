"""What capturing an outgoing call costs the caller: a ``requests`` GET to a local server, bare
and with CAPTURE_OUTGOING_REQUESTS on, rounds interleaved.

    python benchmarks/outgoing.py                    # 2,000 calls per case, 5 rounds
    python benchmarks/outgoing.py --calls 500 --rounds 3

The third party is a keep-alive HTTP/1.1 server in a process of its own (a small JSON answer), and
the events go to the local collector in another process, so neither one's CPU is charged to the
caller. One ``requests.Session`` makes every call: the loopback round trip is what a captured call
is compared with. "captured" switches the capture on for its round (``MoesifClient``'s
``capture_outgoing``) and off afterwards, which restores the unpatched clients for "bare"; its
time includes the events' delivery on the sender threads, flushed at the end of each round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from collector_process import CollectorProcess  # noqa: E402

BODY = b'{"id": 42, "name": "widget", "tags": ["a", "b"]}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without this, Nagle's algorithm holds the
    # body until the client's delayed acknowledgement, 40 ms a call.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve() -> None:
    """The third party: prints its port, then serves until killed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    sys.stdout.write(f"{server.server_port}\n")
    sys.stdout.flush()
    server.serve_forever()


def time_calls(session: Any, url: str, calls: int) -> float:
    """Seconds per call, over ``calls`` GETs whose bodies are read."""
    start = time.perf_counter()
    for _ in range(calls):
        session.get(url).content  # noqa: B018 (the body is read, as an app would)
    return (time.perf_counter() - start) / calls


def measure(calls: int, rounds: int) -> Dict[str, List[float]]:
    import requests

    from moesif_integrations import MoesifClient

    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/items/42?verbose=1"
        with CollectorProcess("outgoing") as collector:
            client = MoesifClient(
                {"APPLICATION_ID": "bench", "BASE_URI": collector.url, "BATCH_SIZE": 100}
            )
            session = requests.Session()
            times: Dict[str, List[float]] = {"bare": [], "captured": []}
            time_calls(session, url, min(calls, 200))  # connections and imports warm
            for round_number in range(rounds):
                for case in ("bare", "captured"):
                    client.capture_outgoing(case == "captured")
                    per_call = time_calls(session, url, calls)
                    if case == "captured":
                        start = time.perf_counter()
                        client.flush(30)
                        per_call += (time.perf_counter() - start) / calls
                        client.capture_outgoing(False)
                    times[case].append(per_call)
                    sys.stderr.write(
                        f"round {round_number + 1}/{rounds} {case}: {per_call * 1e6:.1f} us\n"
                    )
            stats = client.stats()
            client.shutdown(10)
            expected = calls * rounds
            if stats["captured"] != expected:
                sys.stderr.write(f"note: {stats['captured']} events for {expected} calls\n")
            return times
    finally:
        server.kill()
        server.wait()


def report(times: Dict[str, List[float]], calls: int, rounds: int) -> str:
    bare = statistics.median(times["bare"]) * 1e6
    captured = statistics.median(times["captured"]) * 1e6
    added = captured - bare
    return "\n".join(
        [
            f"`python benchmarks/outgoing.py --calls {calls} --rounds {rounds}`, "
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.2f}",
            "",
            "| requests GET to a local server | µs per call (median of rounds) |",
            "|---|---|",
            f"| bare | {bare:.1f} |",
            f"| CAPTURE_OUTGOING_REQUESTS on | {captured:.1f} |",
            f"| added by the capture | {added:.1f} ({100 * added / bare:.1f}%) |",
        ]
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per case per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, cases interleaved")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    for name in [name for name in os.environ if name.startswith("MOESIF_")]:
        del os.environ[name]  # the defaults are measured
    times = measure(args.calls, args.rounds)
    sys.stdout.write(report(times, args.calls, args.rounds) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
