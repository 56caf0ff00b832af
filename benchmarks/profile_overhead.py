"""Where the capture's time goes: a per-function breakdown in microseconds per request.

    pip install py-spy
    python benchmarks/profile_overhead.py [--framework flask] [--integration generic]
                                          [--requests 20000] [--rate 1000]

Runs ``--requests`` GETs then as many 1 KB POSTs through one integration (delivery to a
collector in another process, as in overhead.py) under py-spy, a sampling profiler that reads
the process from outside: no tracing hook slows the code it measures. Only samples of threads
holding the GIL count. Sample counts are turned into microseconds with the CPU time the
process measured itself over the same loops (``time.thread_time`` for the app thread,
``time.process_time`` minus that for the other threads), so sampling errors and the sampling
rate do not skew the scale: app thread per request, other threads (the senders) per event.
A function's time includes the standard library and C code it calls (uuid4, json, zlib,
locks) while it holds the GIL; the app's own frames are counted apart.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<id>\w+)\)(?:: (?P<name>.*))?$")
_BENCH_FILES = {"drivers.py", "measure.py", "profile_overhead.py", "collector_process.py"}
_STDLIB = set(getattr(sys, "stdlib_module_names", ())) | {"<frozen importlib"}


def run_workload(framework_name: str, integration: str, requests: int, cpu_file: str) -> None:
    """The profiled process: requests through one integration, each event delivered. Writes
    the CPU seconds of the app thread and of the whole process over the loops to ``cpu_file``."""
    import logging

    from apps import FRAMEWORKS, BenchSettings
    from collector_process import CollectorProcess, DeliveryWait
    from drivers import REQUESTS
    from measure import make_driver

    logging.basicConfig(level=logging.WARNING)
    framework = {f.name: f for f in FRAMEWORKS}[framework_name]
    thread_cpu = process_cpu = 0.0
    with CollectorProcess("profile") as collector:
        built = framework.build(integration, BenchSettings(collector.url))
        try:
            for spec in REQUESTS:
                driver = make_driver(built, spec)
                collector.client.reset()
                thread_began, process_began = time.thread_time(), time.process_time()
                began = time.perf_counter()
                driver.run(requests)
                delivered, finished = DeliveryWait(collector.client, 0.005).until(requests, 10.0)
                thread_cpu += time.thread_time() - thread_began
                process_cpu += time.process_time() - process_began
                print(
                    f"{spec.name}: {requests} requests, {delivered} events delivered, "
                    f"{(finished - began) / requests * 1e6:.1f} µs per request (under py-spy)",
                    flush=True,
                )
                driver.close()
        finally:
            built.shutdown()
    with open(cpu_file, "w", encoding="utf-8") as handle:
        json.dump({"app_thread": thread_cpu, "other_threads": process_cpu - thread_cpu}, handle)


# ----------------------------------------------------------------------------- the folding


def _kind(frame_file: str) -> str:
    if frame_file.startswith("moesif_integrations/"):
        return "ours"
    if frame_file in _BENCH_FILES:
        return "bench"
    top = frame_file.split("/", 1)[0]
    if top.endswith(".py"):
        top = top[:-3]
    if top in _STDLIB or frame_file.startswith("<frozen"):
        return "stdlib"
    return "app"


def _parse(line: str) -> Optional[Tuple[str, Optional[str], List[Tuple[str, str]], int]]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    parts = stack.split(";")
    thread = _THREAD.match(parts[0])
    if thread is None or len(parts) < 2 or not count.isdigit():
        return None
    frames = []
    for part in parts[1:]:
        match = _FRAME.match(part)
        if match:
            frames.append((match.group("function"), match.group("file")))
    return thread.group("id"), thread.group("name"), frames, int(count)


def fold(raw_path: str, requests: int, cpu: Dict[str, float]) -> str:
    """The per-function tables from py-spy's raw (folded) output, scaled to measured CPU."""
    with open(raw_path, encoding="utf-8", errors="replace") as handle:
        parsed = [p for p in map(_parse, handle) if p]
    names: Dict[str, str] = {tid: name for tid, name, _, _ in parsed if name}
    waiting: Counter[str] = Counter()
    by_owner: Counter[str] = Counter()
    ours_main: Counter[str] = Counter()
    background: Counter[str] = Counter()
    for tid, _name, frames, count in parsed:
        in_request_loop = any(
            f == "WsgiDriver.run" or f.startswith("AsgiDriver.") for f, _ in frames
        )
        owner, owner_frame = "stdlib", None
        for function, path in reversed(frames):
            kind = _kind(path)
            if kind != "stdlib":
                owner, owner_frame = kind, f"{function} ({path})"
                break
        if in_request_loop:
            by_owner[owner] += count
            if owner == "ours" and owner_frame:
                ours_main[owner_frame] += count
        elif any(f == "DeliveryWait.until" for f, _ in frames):
            waiting["app thread"] += count
        elif names.get(tid, "") != "MainThread":
            ours = next((f"{fn} ({p})" for fn, p in reversed(frames) if _kind(p) == "ours"), None)
            if ours:
                background[ours] += count
    total_requests = 2 * requests
    # Microseconds of CPU per sample, on each side: what the process measured over the loops,
    # spread over the samples py-spy took there.
    app_scale = cpu["app_thread"] * 1e6 / max(1, sum(by_owner.values()) + waiting["app thread"])
    other_scale = cpu["other_threads"] * 1e6 / max(1, sum(background.values()))

    def app_us(count: int) -> str:
        return f"{count * app_scale / total_requests:7.2f}"

    def other_us(count: int) -> str:
        return f"{count * other_scale / total_requests:7.2f}"

    owners = ", ".join(f"{owner} {app_us(n).strip()}" for owner, n in by_owner.most_common())
    lines = [
        f"App thread CPU in the request loop: {app_us(sum(by_owner.values())).strip()} "
        f"µs/request ({owners})",
        "",
        "This project on the app thread (µs/request; self time + the stdlib/C code it calls):",
    ]
    lines += [f"  {app_us(count)}  {frame}" for frame, count in ours_main.most_common(25)]
    lines += [
        "",
        f"Other threads (the senders): {other_us(sum(background.values())).strip()} µs/event",
    ]
    lines += [f"  {other_us(count)}  {frame}" for frame, count in background.most_common(30)]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", default="flask")
    parser.add_argument(
        "--integration", default="generic", choices=("generic", "ours", "moesifwsgi")
    )
    parser.add_argument("--requests", type=int, default=20000, help="per request kind")
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--workload", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw", help="keep py-spy's raw output at this path")
    parser.add_argument("--cpu-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workload:
        run_workload(args.framework, args.integration, args.requests, args.cpu_file)
        return 0
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if py_spy is None:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw or os.path.join(tmp, "profile.txt")
        cpu_file = os.path.join(tmp, "cpu.json")
        command = [
            py_spy,
            "record",
            "--nonblocking",
            "--gil",
            "--threads",
            "--rate",
            str(args.rate),
            "--format",
            "raw",
            "--output",
            raw,
            "--",
            sys.executable,
            os.path.abspath(__file__),
            "--workload",
            "--framework",
            args.framework,
            "--integration",
            args.integration,
            "--requests",
            str(args.requests),
            "--cpu-file",
            cpu_file,
        ]
        completed = subprocess.run(command, stderr=subprocess.PIPE, text=True)
        if completed.returncode != 0 or not os.path.exists(cpu_file):
            print(completed.stderr, file=sys.stderr)
            return 1
        with open(cpu_file, encoding="utf-8") as handle:
            cpu = json.load(handle)
        print(
            f"\n{args.framework} + {args.integration}, {args.requests} GET + {args.requests} POST"
        )
        print(fold(raw, args.requests, cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
