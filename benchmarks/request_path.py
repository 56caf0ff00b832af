"""The request-path microscope: CPU the capture adds to each request on the app's thread.

The throughput tables move by several microseconds between runs (delivery competes for the
same CPU). This measure holds delivery still while it counts, so it resolves a fraction of a
microsecond: the app thread's CPU time (``time.thread_time``) per request of the wrapped app
minus that of the bare app, over many short blocks that alternate between the two. Each block
is small enough that no batch becomes due while it runs (the integration batches 1,000 events
with a one-minute timeout here), and what it queued is delivered to the collector after the
block, outside the measured time. The answer is the median of the paired per-block differences,
with the range of the middle half.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from statistics import median, quantiles
from typing import Any, Callable, Dict, List, Optional, Tuple

from apps import BenchSettings, BuiltApp
from drivers import RequestSpec
from measure import make_driver

# Requests per block: fewer than the batch size, so the senders stay asleep while it runs.
BLOCK = 800
MICROSCOPE_BATCH = 1000
MICROSCOPE_BATCH_TIMEOUT = 60.0


@dataclass
class RequestPathResult:
    integration: str
    request: str
    bare_us: List[float] = field(default_factory=list)
    added_us: List[float] = field(default_factory=list)

    @property
    def median_added(self) -> float:
        return median(self.added_us)

    @property
    def middle_half(self) -> Tuple[float, float]:
        if len(self.added_us) < 4:
            return min(self.added_us), max(self.added_us)
        q1, _, q3 = quantiles(self.added_us, n=4)
        return q1, q3

    def as_json(self) -> Dict[str, Any]:
        low, high = self.middle_half
        return {
            "integration": self.integration,
            "request": self.request,
            "bare_cpu_us": median(self.bare_us),
            "added_cpu_us": self.median_added,
            "added_cpu_us_middle_half": [low, high],
            "blocks": len(self.added_us),
        }


def microscope_settings(collector_url: str) -> BenchSettings:
    return BenchSettings(
        collector_url,
        batch_size=MICROSCOPE_BATCH,
        batch_timeout=MICROSCOPE_BATCH_TIMEOUT,
    )


def measure_request_path(
    integration: str,
    build: Callable[[str, BenchSettings], BuiltApp],
    spec: RequestSpec,
    collector_url: str,
    blocks: int,
    progress: Callable[[str], None],
) -> RequestPathResult:
    """``blocks`` pairs of (bare, wrapped) blocks of BLOCK requests, the order alternating."""
    settings = microscope_settings(collector_url)
    result = RequestPathResult(integration, spec.name)
    built = build(integration, settings)
    bare = make_driver(build("bare", settings), spec)
    wrapped = make_driver(built, spec)
    flush: Optional[Callable[..., Any]] = getattr(built.integration, "flush", None)
    try:
        for driver in (bare, wrapped, bare, wrapped):  # warm both, start the senders
            driver.run(BLOCK)
        if flush is not None:
            flush(10.0)

        def timed(driver: Any) -> float:
            gc.collect()
            began = time.thread_time()
            driver.run(BLOCK)
            return (time.thread_time() - began) / BLOCK * 1e6

        for number in range(blocks):
            if number % 2:
                wrapped_us = timed(wrapped)
                bare_us = timed(bare)
            else:
                bare_us = timed(bare)
                wrapped_us = timed(wrapped)
            if flush is not None:
                flush(10.0)  # outside the measured time
            result.bare_us.append(bare_us)
            result.added_us.append(wrapped_us - bare_us)
        low, high = result.middle_half
        progress(
            f"  request path {integration}/{spec.name}: +{result.median_added:.2f} µs "
            f"(middle half {low:.2f} to {high:.2f}) over {median(result.bare_us):.1f} µs bare"
        )
    finally:
        built.shutdown()
        wrapped.close()
        bare.close()
    return result


def request_path_table(results: List[RequestPathResult], framework_title: str) -> List[str]:
    lines = [
        f"## Request path: CPU added on the app's thread ({framework_title}, delivery held still)",
        "",
        "| integration | request | bare app CPU µs/req | added CPU µs/req (median) | middle half |",
        "|---|---|---:|---:|---|",
    ]
    for result in results:
        low, high = result.middle_half
        lines.append(
            f"| {result.integration} | {result.request} | {median(result.bare_us):.1f} "
            f"| {result.median_added:.2f} | {low:.2f} to {high:.2f} |"
        )
    lines.append("")
    lines.append(
        f"Median of {len(results[0].added_us) if results else 0} paired blocks of {BLOCK} "
        "requests (bare and wrapped alternating); the senders batch 1,000 events with a "
        "one-minute timeout, so they sleep while a block runs, and deliver it between blocks."
    )
    lines.append("")
    return lines


# ------------------------------------------------------------------ instruction counts

# Requests counted under valgrind: the difference between two runs of the same app (after the
# same warm-up) is the cost of these requests alone, start-up and imports cancelled out. The
# total stays under the batch size, so the senders never wake and only the request path counts.
COUNTED_REQUESTS = 600
_WARM_UP_REQUESTS = 200
_INSTRUCTIONS = re.compile(r"I\s+refs:\s+([\d,]+)")

_COUNTED_RUN = """
import os, sys
sys.path.insert(0, {benchmarks!r})
from apps import FRAMEWORKS, BenchSettings
from drivers import REQUESTS
from measure import make_driver
framework = next(f for f in FRAMEWORKS if f.name == {framework!r})
settings = BenchSettings("http://127.0.0.1:9", batch_size={batch}, batch_timeout=600.0)
driver = make_driver(framework.build({integration!r}, settings),
                     next(r for r in REQUESTS if r.name == {request!r}))
driver.run({warm_up})
driver.run({count})
os._exit(0)  # no at-exit flush: nothing after the requests is counted
"""


def valgrind_missing() -> Optional[str]:
    return None if shutil.which("valgrind") else "valgrind is not installed"


def _instructions(framework: str, integration: str, request: str, count: int) -> int:
    script = _COUNTED_RUN.format(
        benchmarks=os.path.dirname(os.path.abspath(__file__)),
        framework=framework,
        batch=MICROSCOPE_BATCH,
        integration=integration,
        request=request,
        warm_up=_WARM_UP_REQUESTS,
        count=count,
    )
    return count_instructions(script)


def count_instructions(script: str, hash_seed: Optional[str] = None) -> int:
    """Instructions valgrind counts for ``python -c script`` (without MOESIF_* variables, and
    with PYTHONHASHSEED set to ``hash_seed`` when given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOESIF_")}
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    completed = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    match = _INSTRUCTIONS.search(completed.stderr)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"valgrind run failed: {completed.stderr[-500:]}")
    return int(match.group(1).replace(",", ""))


def instructions_per_request(framework: str, integration: str, request: str) -> float:
    """Instructions one request costs on the app's thread, start-up cancelled out."""
    short = _instructions(framework, integration, request, 0)
    long = _instructions(framework, integration, request, COUNTED_REQUESTS)
    return (long - short) / COUNTED_REQUESTS


@dataclass
class InstructionResult:
    integration: str
    request: str
    bare: float
    wrapped: float

    @property
    def added(self) -> float:
        return self.wrapped - self.bare

    def as_json(self) -> Dict[str, Any]:
        return {
            "integration": self.integration,
            "request": self.request,
            "bare_instructions": self.bare,
            "added_instructions": self.added,
        }


def measure_instructions(
    framework: str, integrations: List[str], requests: List[str], progress: Callable[[str], None]
) -> List[InstructionResult]:
    results = []
    for request in requests:
        bare = instructions_per_request(framework, "bare", request)
        for integration in integrations:
            wrapped = instructions_per_request(framework, integration, request)
            result = InstructionResult(integration, request, bare, wrapped)
            progress(
                f"  instructions {integration}/{request}: +{result.added:,.0f} per request "
                f"over {bare:,.0f} bare"
            )
            results.append(result)
    return results


def instruction_table(
    results: List[InstructionResult], cpu: List[RequestPathResult], framework_title: str
) -> List[str]:
    """Instructions per request, and what they come to in µs at the bare app's own pace."""
    bare_us = {r.request: median(r.bare_us) for r in cpu}
    lines = [
        f"## Request path: instructions added per request ({framework_title}, valgrind)",
        "",
        "| integration | request | bare app | added | added, as µs at the bare app's pace |",
        "|---|---|---:|---:|---:|",
    ]
    for result in results:
        pace = bare_us.get(result.request)
        as_us = f"{result.added * pace / result.bare:.2f}" if pace else "–"
        lines.append(
            f"| {result.integration} | {result.request} | {result.bare:,.0f} "
            f"| {result.added:,.0f} | {as_us} |"
        )
    lines.append("")
    lines.append(
        f"Counted by valgrind (cachegrind, no cache simulation) over {COUNTED_REQUESTS} requests "
        "after a warm-up, start-up cancelled out: the same figure on every run of the same code, "
        "so it settles differences the CPU-time table cannot resolve."
    )
    lines.append("")
    return lines
