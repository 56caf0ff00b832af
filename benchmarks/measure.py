"""The measurements: interleaved throughput rounds with delivery counted, and the delivery
pipeline on its own (memory per queued event, drain capacity, the collector's ceiling)."""

from __future__ import annotations

import gc
import gzip
import http.client
import json
import os
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from apps import BenchSettings, BuiltApp, Framework
from collector_process import CollectorProcess, DeliveryWait, ReadApiClient
from drivers import AsgiDriver, RequestSpec, WsgiDriver

Progress = Callable[[str], None]


def progress_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_driver(built: BuiltApp, spec: RequestSpec, fresh_strings: bool = False) -> Any:
    if built.asgi:
        return AsgiDriver(built.app, spec)
    return WsgiDriver(built.app, spec, fresh_strings=fresh_strings)


# ------------------------------------------------------------------------------ throughput


@dataclass
class RoundResult:
    """One timed run of ``requests`` calls; ``total_seconds`` ends when the last event arrived."""

    requests: int
    request_seconds: float
    total_seconds: float
    delivered: Optional[int]  # None for a bare app: nothing to deliver
    # CPU of the whole process (every thread: app and senders) over the same span. Less
    # disturbed than wall time by other processes on a shared machine.
    cpu_seconds: float = 0.0


@dataclass
class Case:
    """One framework x integration x request, driven the same way in every round."""

    framework: Framework
    integration: str
    spec: RequestSpec
    built: BuiltApp
    driver: Any
    rounds: List[RoundResult] = field(default_factory=list)
    latencies: List[int] = field(default_factory=list)

    @property
    def wrapped(self) -> bool:
        return self.integration != "bare"

    @property
    def key(self) -> str:
        return f"{self.framework.name}/{self.integration}/{self.spec.name}"

    @property
    def app_key(self) -> str:
        return f"{self.framework.name}/{self.integration}"


def wait_for_delivery(
    client: ReadApiClient, expected: int, stall_seconds: float
) -> Tuple[int, float]:
    return DeliveryWait(client).until(expected, stall_seconds)


def event_problems(event: Dict[str, Any], spec: RequestSpec) -> List[str]:
    """What is wrong with a delivered event of ``spec``: a benchmark must time the whole work
    (bodies captured), not a cheaper part of it."""
    problems = []
    request = event.get("request") or {}
    response = event.get("response") or {}
    if request.get("verb") != spec.method:
        problems.append(f"verb {request.get('verb')!r}")
    if not str(request.get("uri", "")).split("?")[0].endswith(spec.path):
        problems.append(f"uri {request.get('uri')!r}")
    if response.get("status") != spec.expected_status:
        problems.append(f"status {response.get('status')!r}")
    if spec.body and not isinstance(request.get("body"), dict):
        problems.append(f"request body not captured (got {request.get('body')!r:.60})")
    if not isinstance(response.get("body"), dict):
        problems.append(f"response body not captured (got {response.get('body')!r:.60})")
    return problems


def warm_up(
    cases: Sequence[Case], count: int, client: ReadApiClient, stall: float, progress: Progress
) -> List[str]:
    """Runs each case ``count`` times and waits for its events: threads started, connections
    open, caches warm. Counts are multiples of the batch size so no half batch is left behind.

    First waits for the events of the apps' check requests (one per case), which sit in half
    batches until the batch timeout: a late one would otherwise be counted in a timed run."""
    checked = sum(1 for case in cases if case.wrapped)
    delivered, _ = wait_for_delivery(client, checked, stall)
    if delivered != checked:
        progress(f"  check requests: {delivered}/{checked} events arrived")
    notes = []
    for case in cases:
        client.reset()
        case.driver.run(count)
        if case.wrapped:
            delivered, _ = wait_for_delivery(client, count, stall)
            if delivered < count:
                progress(f"  warm-up {case.key}: only {delivered}/{count} events arrived")
            stored = client.events(1)
            problems = event_problems(stored[0], case.spec) if stored else ["no event stored"]
            if problems:
                notes.append(
                    f"{case.key}: the delivered event is incomplete: {'; '.join(problems)}"
                )
        case.stats_before = case.built.stats()
    client.reset()
    return notes


def run_rounds(
    cases: Sequence[Case],
    requests: int,
    rounds: int,
    client: ReadApiClient,
    stall: float,
    progress: Progress,
) -> Dict[str, Dict[str, int]]:
    """``rounds`` rounds; each runs every case once, in an order rotated per round, so drifts of
    a shared, noisy machine hit every case alike. Returns what this project's counters
    (``stats()``) moved by during the rounds, per app."""
    apps = {case.app_key: case.built for case in cases if case.wrapped}
    before = {key: built.stats() for key, built in apps.items()}
    for number in range(rounds):
        started = time.perf_counter()
        shift = number % len(cases)
        for case in list(cases[shift:]) + list(cases[:shift]):
            if case.wrapped:
                client.reset()
            gc.collect()
            cpu_began = time.process_time()
            began = time.perf_counter()
            case.driver.run(requests, case.latencies)
            requested = time.perf_counter()
            delivered: Optional[int] = None
            finished = requested
            if case.wrapped:
                delivered, finished = wait_for_delivery(client, requests, stall)
                finished = max(finished, requested)
            cpu = time.process_time() - cpu_began
            case.rounds.append(
                RoundResult(requests, requested - began, finished - began, delivered, cpu)
            )
        progress(f"  round {number + 1}/{rounds} done in {time.perf_counter() - started:.1f}s")
    moved = {}
    for key, built in apps.items():
        after = built.stats()
        if after:
            moved[key] = {
                name: value - before[key].get(name, 0)
                for name, value in after.items()
                if name != "queued"
            }
    return moved


# -------------------------------------------------------------------------- sustained load


@dataclass
class SustainedResult:
    """``requests`` calls back to back, more than the queue holds: does delivery keep up?"""

    framework: str
    integration: str
    request: str
    requests: int
    queue_size: int
    request_rate: float  # requests per second while requesting
    delivered: int
    dropped: Optional[int]  # this project's dropped_queue_full counter


def default_queue_size() -> int:
    """This project's EVENT_QUEUE_SIZE default, from its settings schema."""
    from moesif_integrations import Settings

    return int(Settings.load({"APPLICATION_ID": "bench"}, environ={}).event_queue_size)


def measure_sustained(
    framework: Framework,
    integration: str,
    spec: RequestSpec,
    collector: CollectorProcess,
    requests: int,
    queue_size: Optional[int],
    progress: Progress,
) -> SustainedResult:
    """A run several times longer than the queue: a pipeline slower than the app fills it and
    drops events (counted), which a short run, drained at its end, never shows."""
    client = collector.client
    built = framework.build(integration, BenchSettings(collector.url, queue_size=queue_size))
    driver = make_driver(built, spec)
    try:
        warm = 200
        client.reset()
        driver.run(warm)
        wait_for_delivery(client, warm, stall_seconds=5.0)
        dropped_before = built.stats().get("dropped_queue_full")
        client.reset()
        gc.collect()
        began = time.perf_counter()
        driver.run(requests)
        elapsed = time.perf_counter() - began
        delivered, _ = wait_for_delivery(client, requests, stall_seconds=5.0)
        dropped_after = built.stats().get("dropped_queue_full")
        dropped = (
            None
            if dropped_after is None or dropped_before is None
            else dropped_after - dropped_before
        )
    finally:
        built.shutdown()
        driver.close()
    result = SustainedResult(
        framework.name,
        integration,
        spec.name,
        requests,
        queue_size or default_queue_size(),
        requests / elapsed,
        delivered,
        dropped,
    )
    progress(
        f"  sustained {framework.name}/{integration}: {result.request_rate:,.0f} req/s, "
        f"{delivered}/{requests} delivered, {dropped} dropped"
    )
    return result


# ------------------------------------------------------------------------ delivery pipeline


@dataclass
class PipelineResult:
    """Memory per queued event and drain capacity of one integration, for one request kind."""

    integration: str
    spec: str
    events: int
    # tracemalloc, in the app's process: with DELIVERY_PROCESS the events are queued in the
    # delivery process instead, measured by its resident memory (None: no /proc, or none).
    memory_bytes_per_event: Optional[float] = None
    delivery_process_rss_bytes_per_event: Optional[float] = None
    queued_when_measured: Optional[int] = None
    capacity_rounds: List[float] = field(default_factory=list)  # events per second
    # CPU microseconds per event: the app thread's extra over the bare app (the request path),
    # and every other thread of the app's process (build, serialise, send; with
    # DELIVERY_PROCESS the hand-off), capture and drain; and the delivery process's, if any.
    request_path_cpu_us: List[float] = field(default_factory=list)
    background_cpu_us: List[float] = field(default_factory=list)
    delivery_process_cpu_us: List[float] = field(default_factory=list)
    delivered: int = 0
    sent: int = 0
    collector_ceiling: Optional[float] = None  # events per second, pre-encoded batches

    @property
    def capacity(self) -> Optional[float]:
        return median(self.capacity_rounds) if self.capacity_rounds else None

    @property
    def request_path_us(self) -> Optional[float]:
        return median(self.request_path_cpu_us) if self.request_path_cpu_us else None

    @property
    def background_us(self) -> Optional[float]:
        return median(self.background_cpu_us) if self.background_cpu_us else None

    @property
    def delivery_process_us(self) -> Optional[float]:
        return median(self.delivery_process_cpu_us) if self.delivery_process_cpu_us else None

    def as_json(self) -> Dict[str, Any]:
        return dict(
            self.__dict__,
            capacity=self.capacity,
            request_path_us=self.request_path_us,
            background_us=self.background_us,
            delivery_process_us=self.delivery_process_us,
        )


class DeliveryProcessProbe:
    """The delivery process of a ``DELIVERY_PROCESS`` app, read from outside through /proc:
    resident memory and CPU of all its threads. Every reading is None without such a process
    (sender threads, moesifwsgi, or a fallback to sending from the app's process), without
    /proc, or once the process is not the one found at first (it died and was replaced)."""

    def __init__(self, built: BuiltApp) -> None:
        self._built = built
        self.pid = self._current_pid()

    def _current_pid(self) -> Optional[int]:
        # moesif_integrations/core/delivery/process.py: ProcessDelivery.process, started by
        # the first hand-off (so after the warm-up).
        pipeline = getattr(self._built.integration, "pipeline", None)
        process = getattr(getattr(pipeline, "delivery", None), "process", None)
        return None if process is None or process.gone else process.pid

    def _read(self, name: str) -> Optional[str]:
        if self.pid is None or self._current_pid() != self.pid:
            return None
        try:
            with open(f"/proc/{self.pid}/{name}", encoding="ascii") as handle:
                return handle.read()
        except OSError:
            return None

    def rss_bytes(self) -> Optional[int]:
        """VmRSS from /proc/<pid>/status."""
        for line in (self._read("status") or "").splitlines():
            if line.startswith("VmRSS:"):
                value, unit = line.split()[1:3]
                return int(value) * 1024 if unit == "kB" else None
        return None

    def cpu_seconds(self) -> Optional[float]:
        """utime + stime from /proc/<pid>/stat (all threads), in clock ticks of 1/SC_CLK_TCK s."""
        stat = self._read("stat")
        if stat is None:
            return None
        # Fields after the command name, which is in parentheses and may hold anything.
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_queued(built: BuiltApp, expected: int, stall_seconds: float = 2.0) -> Optional[int]:
    """Waits until the integration counts ``expected`` events queued, or the count stopped
    moving for ``stall_seconds``; the last count (None: the integration does not count). With
    sender threads the count is right as soon as the requests return or the events arrived;
    with DELIVERY_PROCESS the events reach the delivery process a hand-off (every ~10 ms)
    later, and ``queued`` (both processes) holds its count as last reported (every 0.2 s)."""
    queued = built.stats().get("queued")
    moved = time.monotonic()
    while queued is not None and queued != expected:
        if time.monotonic() - moved > stall_seconds:
            break
        time.sleep(0.02)
        now = built.stats().get("queued")
        if now != queued:
            queued, moved = now, time.monotonic()
    return queued


def _per_event(
    before: Optional[float], after: Optional[float], events: int, scale: float = 1.0
) -> Optional[float]:
    """(after - before) / events * scale; None when a reading is missing."""
    if before is None or after is None:
        return None
    return (after - before) / events * scale


def measure_pipeline(
    integration: str,
    build: Callable[[str, BenchSettings], BuiltApp],
    spec: RequestSpec,
    events: int,
    rounds: int,
    batch_size: int,
    progress: Progress,
    ceiling_batches: int = 0,
) -> PipelineResult:
    """With the collector frozen (SIGSTOP) the senders cannot drain: ``events`` requests leave
    ``events`` events queued (with DELIVERY_PROCESS, in the delivery process: each pass waits
    until it holds them all before reading anything).

    Memory (first pass): the tracemalloc delta of that run divided by the count, in the app's
    process; with DELIVERY_PROCESS also the delivery process's resident memory growth over the
    same run divided by the count. Then ``rounds`` passes without tracemalloc: capacity is the
    drain rate once the collector is thawed, timed until the last event arrived; CPU is split
    between the app thread (minus the same requests on the bare app, run just before), every
    other thread of the app's process, and the delivery process if any."""
    result = PipelineResult(integration, spec.name, events)
    with CollectorProcess(f"pipeline-{integration}") as collector:
        client = collector.client
        settings = BenchSettings(collector.url, batch_size=batch_size)
        built = build(integration, settings)
        bare = make_driver(build("bare", settings), spec, fresh_strings=True)
        driver = make_driver(built, spec, fresh_strings=True)
        try:
            warm = batch_size * 2
            bare.run(warm)
            driver.run(warm)
            wait_for_delivery(client, warm, stall_seconds=5.0)
            # The delivery process starts with the first hand-off: there by now, if any.
            child = DeliveryProcessProbe(built)
            for number in range(rounds + 1):
                measuring_memory = number == 0
                # The last pass's events reported gone: a stale count would end the wait below
                # before this pass's events were all handed off.
                wait_until_queued(built, 0)
                gc.collect()
                bare_began = time.thread_time()
                bare.run(events)
                bare_cpu = time.thread_time() - bare_began
                client.reset()
                collector.pause()
                try:
                    gc.collect()
                    if measuring_memory:
                        tracemalloc.start()
                        before = tracemalloc.get_traced_memory()[0]
                        rss_before = child.rss_bytes()
                    child_began = child.cpu_seconds()
                    process_began, thread_began = time.process_time(), time.thread_time()
                    driver.run(events)
                    thread_cpu = time.thread_time() - thread_began
                    queued = wait_until_queued(built, events)
                    capture_background = (
                        time.process_time() - process_began - (time.thread_time() - thread_began)
                    )
                    if measuring_memory:
                        gc.collect()
                        after = tracemalloc.get_traced_memory()[0]
                        tracemalloc.stop()
                        result.memory_bytes_per_event = (after - before) / events
                        result.delivery_process_rss_bytes_per_event = _per_event(
                            rss_before, child.rss_bytes(), events
                        )
                        result.queued_when_measured = queued
                finally:
                    process_began, thread_began = time.process_time(), time.thread_time()
                    began = time.perf_counter()
                    collector.resume()
                delivered, finished = wait_for_delivery(client, events, stall_seconds=10.0)
                drain_background = (
                    time.process_time() - process_began - (time.thread_time() - thread_began)
                )
                child_cpu = _per_event(child_began, child.cpu_seconds(), events, 1e6)
                result.sent += events
                result.delivered += delivered
                if not measuring_memory and delivered:
                    result.capacity_rounds.append(delivered / (finished - began))
                    result.request_path_cpu_us.append((thread_cpu - bare_cpu) / events * 1e6)
                    result.background_cpu_us.append(
                        (capture_background + drain_background) / events * 1e6
                    )
                    if child_cpu is not None:
                        result.delivery_process_cpu_us.append(child_cpu)
            if ceiling_batches:
                # The events just delivered, sent again as fast as a bare client can.
                sample = client.events(batch_size)
                client.reset()
                result.collector_ceiling = median(
                    collector_ceiling(collector, sample, ceiling_batches) for _ in range(3)
                )
            progress(f"  pipeline {integration}/{spec.name}: {_pipeline_line(result)}")
        finally:
            built.shutdown()
            driver.close()
            bare.close()
    return result


def _pipeline_line(result: PipelineResult) -> str:
    line = (
        f"{_fmt(result.memory_bytes_per_event)} B/event, {_fmt(result.capacity)} events/s, "
        f"CPU per event: request path {_fmt(result.request_path_us)} us + background "
        f"{_fmt(result.background_us)} us"
    )
    if result.delivery_process_rss_bytes_per_event is not None or result.delivery_process_cpu_us:
        line += (
            f"; delivery process: {_fmt(result.delivery_process_rss_bytes_per_event)} B/event "
            f"(RSS), {_fmt(result.delivery_process_us)} us/event CPU"
        )
    if result.collector_ceiling:
        line += f", collector ceiling {_fmt(result.collector_ceiling)} events/s"
    return line


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def collector_ceiling(
    collector: CollectorProcess, sample: List[Dict[str, Any]], batches: int, threads: int = 2
) -> float:
    """Events per second the collector stores when fed pre-encoded gzip batches of ``sample``
    over ``threads`` keep-alive connections: the ceiling of any client's drain capacity."""
    body = gzip.compress(json.dumps(sample).encode("utf-8"), 1)
    parts = urlsplit(collector.url)
    headers = {
        "X-Moesif-Application-Id": "bench",
        "Content-Type": "application/json; charset=utf-8",
        "Content-Encoding": "gzip",
    }
    errors: List[str] = []

    def post_batches() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        try:
            for _ in range(batches):
                conn.request("POST", "/v1/events/batch", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status >= 300:
                    errors.append(str(response.status))
                    return
        finally:
            conn.close()

    workers = [threading.Thread(target=post_batches) for _ in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"the collector refused the sample batch: {errors[0]}")
    return threads * batches * len(sample) / elapsed
