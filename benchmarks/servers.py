"""Throughput, latency and delivery through real servers: what users will see.

    python benchmarks/servers.py [--duration 10] [--runs 2] [--servers sync,gthread,waitress]
        [--frameworks flask,falcon] [--requests GET,POST] [--integrations NAMES] [--no-pin]
        [--connections 8] [--json PATH]

Each case serves one app (``served_app.py``: the benchmark's Flask or Falcon app, bare or with
an integration) under a real server with one worker: gunicorn ``sync``, gunicorn ``gthread``
with 4 threads, or waitress with 4 threads. The server is pinned to CPU 0 (``taskset``) where
the machine has 2 CPUs or more, the load generator to the last CPU; the local collector runs
in a process of its own. Load comes from ``wrk -t1 -c8`` (a documented Python fallback,
``loadgen.py``, where ``wrk`` is not installed) for ``--duration`` seconds; then the server is
stopped gracefully (SIGTERM for gunicorn, SIGINT for waitress), its at-exit flush runs, and the
events the collector holds are counted. Rows report the median over ``--runs`` and the range.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from collector_process import CollectorProcess, ReadApiClient  # noqa: E402
from drivers import REQUESTS, RequestSpec  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = ("sync", "gthread", "waitress")
FRAMEWORKS = ("flask", "falcon")
INTEGRATIONS = ("bare", "generic", "generic-process", "ours", "moesifwsgi")
LABELS = {
    "bare": "bare",
    "generic": "default (MoesifMiddleware)",
    "generic-process": "DELIVERY_PROCESS",
    "ours": "adapter",
    "moesifwsgi": "moesifwsgi 1.10.5",
}
SERVER_LABELS = {
    "sync": "gunicorn sync",
    "gthread": "gunicorn gthread 4",
    "waitress": "waitress 4 threads",
}


@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    events: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def delivered(self) -> float:
        return self.events / self.requests if self.requests else 0.0


@dataclass
class Case:
    server: str
    framework: str
    request: str
    integration: str
    runs: List[Run] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinning(no_pin: bool) -> Tuple[List[str], List[str]]:
    """taskset prefixes for the server and the load generator."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if no_pin or len(cpus) < 2 or not shutil.which("taskset"):
        return [], []
    return ["taskset", "-c", str(cpus[0])], ["taskset", "-c", str(cpus[-1])]


def server_command(server: str, port: int) -> List[str]:
    bind = f"127.0.0.1:{port}"
    if server == "waitress":
        return [
            sys.executable,
            "-m",
            "waitress",
            "--threads=4",
            f"--listen={bind}",
            "served_app:application",
        ]
    command = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", bind, "-k", server]
    if server == "gthread":
        command += ["--threads", "4"]
    return [*command, "--graceful-timeout", "30", "served_app:application"]


def wait_until_serving(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /items/1 HTTP/1.0\r\nHost: x\r\n\r\n")
                if sock.recv(12).startswith(b"HTTP/1."):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not answer in time")


_WRK_RATE = re.compile(r"(\d+) requests in ([\d.]+)(\w+)")
_WRK_PERCENTILE = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def load(
    url: str, spec: RequestSpec, duration: float, connections: int, prefix: List[str]
) -> Tuple[int, float, float, float]:
    """(requests completed, seconds, p50 ms, p99 ms) of one load run."""
    headers = [
        h for name, value in spec.headers if name != "Host" for h in ("-H", f"{name}: {value}")
    ]
    with tempfile.TemporaryDirectory(prefix="bench-load-") as temp:
        body_path = os.path.join(temp, "body")
        with open(body_path, "wb") as file:
            file.write(spec.body)
        if shutil.which("wrk"):
            script = os.path.join(temp, "request.lua")
            with open(script, "w") as file:
                file.write(f'wrk.method = "{spec.method}"\n')
                if spec.body:
                    file.write(f"local f = io.open({body_path!r}, 'rb')\n")
                    file.write("wrk.body = f:read('*a')\nf:close()\n")
            command = [
                *prefix,
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration:g}s",
                "--latency",
                "-s",
                script,
                *headers,
                url,
            ]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            total = _WRK_RATE.search(out)
            if total is None:
                raise RuntimeError(f"unexpected wrk output:\n{out}")
            seconds = float(total.group(2)) * ({"ms": 0.001, "s": 1.0, "m": 60.0}[total.group(3)])
            percentiles = {
                p: float(v) * _UNIT_MS[unit] for p, v, unit in _WRK_PERCENTILE.findall(out)
            }
            return int(total.group(1)), seconds, percentiles["50"], percentiles["99"]
        command = [
            *prefix,
            sys.executable,
            os.path.join(HERE, "loadgen.py"),
            url,
            "--method",
            spec.method,
            "--connections",
            str(connections),
            "--duration",
            str(duration),
            *headers,
        ]
        if spec.body:
            command += ["--body", body_path]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        result = json.loads(out)
        return result["requests"], result["seconds"], result["p50_ms"], result["p99_ms"]


def run_case(
    case: Case,
    collector: ReadApiClient,
    collector_url: str,
    args: argparse.Namespace,
    pins: Tuple[List[str], List[str]],
) -> Run:
    spec = next(r for r in REQUESTS if r.name == case.request)
    collector.reset()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOESIF_")}
    env.update(
        BENCH_FRAMEWORK=case.framework,
        BENCH_INTEGRATION=case.integration,
        BENCH_COLLECTOR=collector_url,
        PYTHONPATH=os.pathsep.join([HERE, *sys.path]),
    )
    server = subprocess.Popen(
        [*pins[0], *server_command(case.server, port)],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(port, server, 60)
        collector.reset()  # the readiness probe's event
        url = f"http://127.0.0.1:{port}{spec.path}" + (f"?{spec.query}" if spec.query else "")
        requests, seconds, p50, p99 = load(url, spec, args.duration, args.connections, pins[1])
    finally:
        server.send_signal(signal.SIGINT if case.server == "waitress" else signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    # The at-exit flush is done once the server exited; the collector may still be storing.
    events, still = collector.event_count(), 0
    while still < 5:
        time.sleep(0.2)
        now = collector.event_count()
        still = still + 1 if now == events else 0
        events = now
    return Run(requests, seconds, p50, p99, events)


def spread(values: List[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return (
        f"{format(statistics.median(values), fmt)} "
        f"({format(min(values), fmt)}–{format(max(values), fmt)})"
    )


def report(cases: List[Case], args: argparse.Namespace, command: str) -> str:
    server_pin = pinning(args.no_pin)[0]
    pinned = f"CPU {server_pin[-1]}" if server_pin else "no"
    lines = [
        "## Through real servers",
        "",
        f"- command: `{command}`",
        f"- load: {'wrk' if shutil.which('wrk') else 'loadgen.py (wrk not installed)'} "
        f"-c{args.connections}, {args.duration:g} s per run, {args.runs} run(s); "
        f"server pinned: {pinned}",
        f"- load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "- medians over runs, (range); × bare paired per run; events/request counted at the "
        "collector after a graceful stop",
        "",
        "| server | app | request | integration | req/s | × bare | p50 ms | p99 ms "
        "| events/request |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    bare: Dict[Tuple[str, str, str], Case] = {
        (c.server, c.framework, c.request): c for c in cases if c.integration == "bare"
    }
    for case in cases:
        base = bare.get((case.server, case.framework, case.request))
        ratios = (
            [run.rate / b.rate for run, b in zip(case.runs, base.runs) if b.rate]
            if base is not None and case.integration != "bare"
            else []
        )
        lines.append(
            f"| {SERVER_LABELS[case.server]} | {case.framework} | {case.request} | "
            f"{LABELS[case.integration]} | {spread([r.rate for r in case.runs], ',.0f')} | "
            f"{spread(ratios, '.2f') + 'x' if ratios else '–'} | "
            f"{spread([r.p50_ms for r in case.runs], '.2f')} | "
            f"{spread([r.p99_ms for r in case.runs], '.2f')} | "
            + (
                "–"
                if case.integration == "bare"
                else spread([r.delivered for r in case.runs], ".3f")
                + f" ({sum(r.events for r in case.runs):,} of "
                f"{sum(r.requests for r in case.runs):,})"
            )
            + " |"
        )
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    parser.add_argument("--runs", type=int, default=2, help="runs of every case (interleaved)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--requests", default="GET,POST")
    parser.add_argument("--integrations", default=",".join(INTEGRATIONS))
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server to a CPU")
    parser.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    integrations = args.integrations.split(",")
    if "bare" not in integrations:
        integrations.insert(0, "bare")
    cases = [
        Case(server, framework, request, integration)
        for server in args.servers.split(",")
        for framework in args.frameworks.split(",")
        for request in args.requests.split(",")
        for integration in integrations
    ]
    pins = pinning(args.no_pin)
    command = "python benchmarks/servers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with CollectorProcess("servers") as collector_process:
        client = ReadApiClient(collector_process.url)
        for number in range(args.runs):
            for case in cases:
                run = run_case(case, client, collector_process.url, args, pins)
                case.runs.append(run)
                print(
                    f"  run {number + 1}/{args.runs} {case.server} {case.framework} "
                    f"{case.request} {case.integration}: {run.rate:,.0f} req/s, "
                    f"p99 {run.p99_ms:.2f} ms, {run.events}/{run.requests} events",
                    file=sys.stderr,
                    flush=True,
                )
        client.close()
    print(report(cases, args, command.strip()))
    if args.json:
        with open(args.json, "w") as file:
            json.dump([{**asdict(c), "runs": [asdict(r) for r in c.runs]} for c in cases], file)


if __name__ == "__main__":
    main()
