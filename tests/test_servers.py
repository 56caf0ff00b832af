"""The generic middleware under real servers (wsgiref, waitress, gunicorn sync and gthread).

Each test serves ``apps.wrapped:app`` in a subprocess, configured through ``MOESIF_*``
environment variables, talks to it over loopback HTTP and reads what reached the local collector.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import signal
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, ContextManager, Dict, List, Tuple

import pytest
from servers import ServedApp, http_request, installed, serve

from moesif_integrations.collector import Collector

# name -> (server, extra command-line arguments)
SERVERS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "wsgiref": ("wsgiref", ()),
    "waitress": ("waitress", ()),
    "gunicorn-sync": ("gunicorn", ()),
    "gunicorn-gthread": ("gunicorn", ("--worker-class", "gthread", "--threads", "4")),
}
APP = "apps.wrapped:app"


def server_params(*names: str) -> List[Any]:
    chosen = names or tuple(SERVERS)
    return [
        pytest.param(
            name,
            id=name,
            marks=pytest.mark.skipif(
                not installed(SERVERS[name][0]), reason=f"{SERVERS[name][0]} is not installed"
            ),
        )
        for name in chosen
    ]


def moesif_env(collector: Collector, **options: Any) -> Dict[str, str]:
    env = {
        "MOESIF_APPLICATION_ID": "served-app-id",
        "MOESIF_BASE_URI": collector.url,
        "MOESIF_EVENT_BATCH_TIMEOUT": "0.05",
    }
    env.update({f"MOESIF_{key}": str(value) for key, value in options.items()})
    return env


def serve_named(
    name: str, env: Dict[str, str], *more: str, log_dir: Any = None
) -> ContextManager[ServedApp]:
    server, extra = SERVERS[name]
    return serve(server, APP, env, *extra, *more, log_dir=str(log_dir) if log_dir else None)


def event_seconds(stamp: str) -> float:
    parsed = datetime.strptime(stamp.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
    return parsed.replace(tzinfo=timezone.utc).timestamp()


def settle(collector: Collector, expected: int) -> List[Dict[str, Any]]:
    """Waits for ``expected`` events, then makes sure no more (duplicates) come."""
    collector.wait_for_events(expected, timeout=15)
    time.sleep(0.3)
    events: List[Dict[str, Any]] = collector.events()
    assert len(events) == expected
    return events


@pytest.mark.parametrize("name", server_params())
def test_every_event_arrives_with_its_fields(
    name: str, collector: Collector, tmp_path: Any
) -> None:
    with serve_named(name, moesif_env(collector), log_dir=tmp_path) as served:
        sent: Dict[str, Tuple[str, str, int]] = {}  # transaction id -> (verb, path, status)
        for index in range(30):
            path = f"/items/{index}?q={index}"
            reply = served.request("GET", path)
            assert reply.status == 200 and reply.json() == {"id": str(index)}
            sent[reply.headers["x-moesif-transaction-id"]] = ("GET", path, 200)
        for index in range(10):
            body = b'{"n": %d}' % index
            headers = {"Content-Type": "application/json"}
            reply = served.request("POST", "/echo", body=body, headers=headers)
            assert reply.status == 200 and reply.json()["json"] == {"n": index}
            sent[reply.headers["x-moesif-transaction-id"]] = ("POST", "/echo", 200)
        headers = {"Content-Type": "application/json"}
        reply = served.request("POST", "/echo", body=b'{"n": ', headers=headers)
        assert reply.status == 400
        sent[reply.headers["x-moesif-transaction-id"]] = ("POST", "/echo", 400)
        served.wait_recorded(len(sent))
        assert served.flush()["flushed"] is True
        events = settle(collector, len(sent))
    for event in events:
        verb, path, status = sent.pop(event["transaction_id"])
        request, response = event["request"], event["response"]
        assert request["verb"] == verb
        assert request["uri"] == f"http://127.0.0.1:{served.port}{path}"
        assert request["headers"]["Host"] == f"127.0.0.1:{served.port}"
        assert request["ip_address"] == "127.0.0.1"
        assert response["status"] == status
        assert response["headers"]["X-Moesif-Transaction-Id"] == event["transaction_id"]
        assert event_seconds(response["time"]) >= event_seconds(request["time"])
        if status == 200 and verb == "POST":
            assert response["body"]["json"] == request["body"]
    assert not sent  # every request became exactly one event


@pytest.mark.skipif(not installed("gunicorn"), reason="gunicorn is not installed")
@pytest.mark.parametrize("delivery_process", [False, True], ids=["threads", "delivery-process"])
def test_preloaded_forked_workers_deliver_every_event(
    collector: Collector, tmp_path: Any, delivery_process: bool
) -> None:
    env = moesif_env(
        collector, GET_METADATA="apps.hooks:pid_metadata", DELIVERY_PROCESS=delivery_process
    )
    # The app makes one request at import, so the master has a queue and running sender
    # threads when it forks: the workers inherit the queue but not the threads.
    env["TEST_APP_WARM_UP"] = "1"
    # --preload builds the middleware in the master; each worker is a fork of it.
    preloaded = serve_named("gunicorn-sync", env, "--preload", "--workers", "2", log_dir=tmp_path)
    with preloaded as served:
        # Concurrent slow requests keep one sync worker busy, so both of them serve some.
        with ThreadPoolExecutor(6) as pool:
            replies = list(
                pool.map(lambda i: served.request("GET", f"/items/{i}?delay=0.02"), range(60))
            )
        assert all(reply.status == 200 for reply in replies)
        served_by = Counter(int(reply.headers["x-pid"]) for reply in replies)
        events = settle(collector, 61)
    master = served.process.pid
    assert len(served_by) == 2 and master not in served_by
    by_pid = Counter(event["metadata"]["pid"] for event in events)
    assert by_pid == served_by + Counter({master: 1})  # the master's own request, delivered once
    (warm_up,) = [e for e in events if e["request"]["uri"].endswith("/warm-up")]
    assert warm_up["metadata"]["pid"] == master
    assert len({event["transaction_id"] for event in events}) == 61


@pytest.mark.parametrize("name", server_params())
def test_streamed_response_reaches_the_client_chunk_by_chunk(
    name: str, collector: Collector, tmp_path: Any
) -> None:
    gate = tmp_path / "gate"
    with serve_named(name, moesif_env(collector), log_dir=tmp_path) as served:
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
        try:
            started = time.monotonic()
            conn.request("GET", f"/stream?gate={gate}")
            response = conn.getresponse()
            first = b""
            while b"\n\n" not in first:
                # Buffering would block here until the app gives up on the gate (10 s): the
                # read would time out after 5 s.
                first += response.read1(65536)
            first_after = time.monotonic() - started
            assert first == b"data: first\n\n"
            assert not gate.exists()  # the app is still waiting for the test to open the gate
            time.sleep(0.3)
            gate.touch()
            rest = response.read()
        finally:
            conn.close()
        assert rest == b"data: second\n\n"
        assert first_after < 3.0
        assert served.flush()["flushed"] is True
        (event,) = settle(collector, 1)
    response_event = event["response"]
    assert response_event["status"] == 200
    assert base64.b64decode(response_event["body"]) == first + rest
    # The response time is when the last chunk was produced, after the gate opened.
    elapsed = event_seconds(response_event["time"]) - event_seconds(event["request"]["time"])
    assert elapsed >= 0.3 - 0.002  # times are rounded to the millisecond


@pytest.mark.parametrize("name", server_params("gunicorn-sync", "gunicorn-gthread", "waitress"))
def test_file_wrapper_download_is_intact_and_uncaptured(
    name: str, collector: Collector, tmp_path: Any
) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    path = tmp_path / "download.bin"
    path.write_bytes(payload)
    with serve_named(name, moesif_env(collector), log_dir=tmp_path) as served:
        reply = served.request("GET", f"/download?path={path}", timeout=30)
        assert reply.status == 200
        assert len(reply.body) == len(payload)
        assert hashlib.sha256(reply.body).digest() == hashlib.sha256(payload).digest()
        assert served.flush()["flushed"] is True
        (event,) = settle(collector, 1)
    assert event["response"]["status"] == 200
    assert event["response"]["headers"]["Content-Length"] == str(len(payload))
    # The file wrapper went back to the server untouched, so its body was never read by us.
    assert event["response"].get("body") is None


# waitress installs no SIGTERM handler (see test_sigterm_under_waitress_delivers_what_was_queued
# for the one the integration sets); its orderly stop is SIGINT (Ctrl-C), a normal interpreter
# exit.
STOP_SIGNALS = {
    "wsgiref": signal.SIGTERM,
    "waitress": signal.SIGINT,
    "gunicorn-sync": signal.SIGTERM,
    "gunicorn-gthread": signal.SIGTERM,
}


@pytest.mark.parametrize("name", server_params())
def test_stopping_the_server_flushes_what_was_queued(
    name: str, collector: Collector, tmp_path: Any
) -> None:
    # A batch timeout of an hour: only the flush at exit can deliver these events.
    env = moesif_env(collector, EVENT_BATCH_TIMEOUT=3600)
    with serve_named(name, env, log_dir=tmp_path) as served:
        for index in range(25):
            assert served.request("GET", f"/items/{index}").status == 200
        stats = served.wait_recorded(25)
        assert stats["queued"] == 25 and stats["sent"] == 0
        time.sleep(0.2)
        assert collector.event_count() == 0
        assert served.stop(STOP_SIGNALS[name]) == 0, served.output()
    events = settle(collector, 25)
    assert sorted(int(e["request"]["uri"].rsplit("/", 1)[1]) for e in events) == list(range(25))


@pytest.mark.parametrize("flush_on_sigterm", [True, False])
@pytest.mark.skipif(not installed("waitress"), reason="waitress is not installed")
def test_sigterm_under_waitress_delivers_what_was_queued(
    flush_on_sigterm: bool, collector: Collector, tmp_path: Any
) -> None:
    """docker stop, Kubernetes: SIGTERM to a server that sets no handler for it. The integration
    flushes within SHUTDOWN_TIMEOUT, then SIGTERM ends the process as it would have."""
    env = moesif_env(
        collector,
        EVENT_BATCH_TIMEOUT=3600,  # only the flush on SIGTERM can deliver these events
        SHUTDOWN_TIMEOUT=5,
        FLUSH_ON_SIGTERM=flush_on_sigterm,
    )
    with serve_named("waitress", env, log_dir=tmp_path) as served:
        for index in range(40):
            assert served.request("GET", f"/items/{index}").status == 200
        assert served.wait_recorded(40)["queued"] == 40
        assert served.stop(signal.SIGTERM) == -signal.SIGTERM, served.output()
    assert served.exit_seconds is not None and served.exit_seconds < 5 + 1.5
    if flush_on_sigterm:
        events = settle(collector, 40)
        assert sorted(int(e["request"]["uri"].rsplit("/", 1)[1]) for e in events) == list(range(40))
    else:
        time.sleep(0.3)
        assert collector.event_count() == 0


def interleaved_medians(apps: List[ServedApp], count: int) -> List[float]:
    """Median latency of each app, their requests interleaved so that load on the machine
    weighs on all of them alike."""
    durations: List[List[float]] = [[] for _ in apps]
    for index in range(count):
        for served, measured in zip(apps, durations):
            started = time.perf_counter()
            reply = http_request(served.port, "GET", f"/items/{index}")
            measured.append(time.perf_counter() - started)
            assert reply.status == 200
    return [statistics.median(measured) for measured in durations]


SHUTDOWN_TIMEOUT = 1.0


@pytest.mark.parametrize("name", server_params("gunicorn-sync", "gunicorn-gthread"))
def test_hanging_collector_slows_neither_requests_nor_exit(
    name: str, collector: Collector, tmp_path: Any
) -> None:
    requests, warm_up = 150, 20
    options = {"SHUTDOWN_TIMEOUT": SHUTDOWN_TIMEOUT, "READ_TIMEOUT": 60}
    hanging = Collector(port=0, db_path=":memory:").start()
    hanging.hang(all=True)
    try:
        healthy_env = moesif_env(collector, **options)
        # A small queue, so that it fills while the senders hang.
        hung_env = moesif_env(hanging, EVENT_QUEUE_SIZE=50, **options)
        with contextlib.ExitStack() as stack:
            healthy = stack.enter_context(serve_named(name, healthy_env, log_dir=tmp_path))
            hung = stack.enter_context(serve_named(name, hung_env, log_dir=tmp_path))
            interleaved_medians([healthy, hung], warm_up)
            healthy_median, hung_median = interleaved_medians([healthy, hung], requests)
            stats = hung.wait_recorded(requests + warm_up)
            # The senders hang on their first batches; the queue fills, the rest is counted.
            assert stats["sent"] == 0 and stats["dropped_queue_full"] > 0
            assert stats["captured"] + stats["dropped_queue_full"] == requests + warm_up
            healthy.wait_recorded(requests + warm_up)
            assert healthy.flush()["stats"]["sent"] == requests + warm_up
            assert hung.stop(signal.SIGTERM) == 0, hung.output()
    finally:
        hanging.close()

    # Medians of 150 loopback requests of about a millisecond: a request that waited for the
    # collector would take READ_TIMEOUT (60 s); scheduling noise stays well inside this margin.
    assert hung_median <= healthy_median * 1.5 + 0.002, (hung_median, healthy_median)
    # The worker's exit flush gives up after SHUTDOWN_TIMEOUT; a second more covers signal
    # handling and interpreter teardown; gunicorn's master polls for dead workers every 0.1 s
    # and then removes its own files: 0.5 s more covers that.
    assert hung.exit_seconds is not None
    assert hung.exit_seconds < SHUTDOWN_TIMEOUT + 1.0 + 0.5, hung.exit_seconds
    assert "events left unsent" in hung.output()
