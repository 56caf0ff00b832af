"""Delivery to the local collector: batching, retries, failures, bounds, fork and exit."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List

import pytest
from servers import free_port
from wsgi_client import call

from moesif_integrations import MoesifMiddleware
from moesif_integrations.collector import Collector
from moesif_integrations.core.config.schema import Settings
from moesif_integrations.core.counters import Counters
from moesif_integrations.core.delivery.event_senders import event_queue_rules
from moesif_integrations.core.delivery.queue import BoundedQueue

APP_ID = "delivery-app-id"


def hello(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"hello": "world"}']


@pytest.fixture
def wrap(middlewares: Callable[..., MoesifMiddleware]) -> Callable[..., MoesifMiddleware]:
    def factory(url: str = "", **settings: Any) -> MoesifMiddleware:
        if url:
            settings["BASE_URI"] = url
        return middlewares(hello, APP_ID, **{"RETRY_BACKOFF": 0.05, **settings})

    return factory


def test_events_go_in_batches_of_batch_size(wrap: Any, collector: Any) -> None:
    app = wrap(BATCH_SIZE=50, EVENT_BATCH_TIMEOUT=5, EVENT_WORKER_COUNT=1)
    for index in range(120):
        call(app, "GET", f"/n/{index}")
    assert app.flush(timeout=10)
    assert len(collector.wait_for_events(120)) == 120
    assert collector.request_count("/v1/events/batch") == 3
    stats = app.stats()
    assert stats["sent"] == 120 and stats["failed"] == 0 and stats["queued"] == 0


def test_partial_batch_leaves_after_the_batch_timeout(wrap: Any, collector: Any) -> None:
    app = wrap(BATCH_SIZE=100, EVENT_BATCH_TIMEOUT=0.3)
    call(app)
    started = time.monotonic()
    collector.wait_for_events(1, timeout=5)
    assert time.monotonic() - started < 2.0


def test_transient_failures_are_retried_with_retry_after(wrap: Any, collector: Any) -> None:
    collector.fail(503, retry_after=0.2, count=2)
    app = wrap()
    call(app)
    started = time.monotonic()
    assert app.flush(timeout=10)
    assert time.monotonic() - started >= 0.4  # two Retry-After waits honoured
    assert len(collector.wait_for_events(1)) == 1
    assert collector.request_count("/v1/events/batch") == 3
    assert app.stats()["retries"] == 2


def test_retries_are_bounded_and_counted(wrap: Any, collector: Any) -> None:
    collector.fail(500)
    app = wrap(MAX_RETRIES=2)
    for _ in range(3):
        call(app)
    assert not app.flush(timeout=10)
    stats = app.stats()
    assert stats["failed"] == 3 and stats["sent"] == 0 and stats["queued"] == 0
    # One batch, 1 + 2 retries; then its two halves once each (a 500 may blame one event):
    # both fail, so the search stops there.
    assert collector.request_count("/v1/events/batch") == 5
    assert collector.event_count() == 0


def test_wrong_application_id_is_logged_once_and_not_retried(collector: Any, caplog: Any) -> None:
    strict = Collector(port=0, db_path=":memory:", application_ids={"the-right-id"}).start()
    try:
        app = MoesifMiddleware(
            hello,
            {"APPLICATION_ID": "the-wrong-id", "BASE_URI": strict.url, "EVENT_BATCH_TIMEOUT": 0.05},
        )
        caplog.set_level(logging.ERROR, logger="moesif_integrations")
        for _ in range(3):
            call(app)
            app.flush(timeout=5)
        assert strict.request_count("/v1/events/batch") == 3
        errors = [r for r in caplog.records if "401" in r.getMessage()]
        assert len(errors) == 1 and "APPLICATION_ID" in errors[0].getMessage()
        assert "the-wrong-id" not in errors[0].getMessage()
        assert app.stats()["failed"] == 3
        app.shutdown(1)
    finally:
        strict.stop()


def test_payload_too_large_splits_the_batch(wrap: Any, collector: Any) -> None:
    collector.fail(413, count=1)
    app = wrap(BATCH_SIZE=10, EVENT_BATCH_TIMEOUT=5, EVENT_WORKER_COUNT=1)
    for _ in range(10):
        call(app)
    assert app.flush(timeout=10)
    assert len(collector.wait_for_events(10)) == 10
    assert collector.request_count("/v1/events/batch") == 3


def test_collector_down_then_back(wrap: Any) -> None:
    port = free_port()
    app = wrap(
        url=f"http://127.0.0.1:{port}",
        MAX_RETRIES=20,
        RETRY_BACKOFF=0.1,
        RETRY_MAX_DELAY=0.3,
        EVENT_QUEUE_SIZE=1000,
    )
    for _ in range(200):
        call(app)
    time.sleep(0.5)
    assert app.stats()["sent"] == 0
    revived = Collector(port=port, db_path=":memory:").start()
    try:
        assert app.flush(timeout=20), app.stats()
        assert len(revived.wait_for_events(200)) == 200
        stats = app.stats()
        assert stats["sent"] == 200 and stats["failed"] == 0 and stats["retries"] > 0
    finally:
        revived.stop()


def test_hanging_collector_never_slows_the_app(wrap: Any, collector: Any) -> None:
    collector.hang()
    app = wrap(READ_TIMEOUT=30, EVENT_QUEUE_SIZE=100)
    durations = []
    for _ in range(300):
        started = time.perf_counter()
        call(app)
        durations.append(time.perf_counter() - started)
    durations.sort()
    assert durations[len(durations) // 2] < 0.005
    assert durations[-1] < 0.1
    stats = app.stats()
    # The first batch hangs in a sender; the queue fills to its bound and the rest is counted.
    assert stats["captured"] + stats["dropped_queue_full"] == 300
    assert stats["dropped_queue_full"] > 0
    started = time.monotonic()
    assert app.shutdown(timeout=1) is False
    assert time.monotonic() - started < 2.0
    collector.heal()


def test_queue_bound_in_bytes(wrap: Any, collector: Any) -> None:
    collector.hang()

    def big(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        start_response("200 OK", [])
        return [b"x" * 90_000]

    app = MoesifMiddleware(
        big,
        {
            "APPLICATION_ID": APP_ID,
            "BASE_URI": collector.url,
            "EVENT_QUEUE_MAX_BYTES": 1_000_000,
            "EVENT_BATCH_TIMEOUT": 30,
            "EVENT_WORKER_COUNT": 1,
        },
    )
    for _ in range(30):
        call(app)
    stats = app.stats()
    # 10 events of ~92 KB (body, headers, the record) fit in 1 MB; the one sender took the
    # queue's first batch (due at half the byte bound) and hangs with it: at most one more
    # queue's worth is held.
    assert stats["captured"] + stats["dropped_queue_full"] == 30
    assert 10 <= stats["captured"] <= 22
    assert stats["dropped_queue_full"] >= 8
    assert stats["queued"] == stats["captured"]  # nothing could be delivered
    app.shutdown(timeout=0.5)
    collector.heal()


def test_unreachable_collector_gives_up_without_blocking(wrap: Any) -> None:
    app = wrap(url=f"http://127.0.0.1:{free_port()}", MAX_RETRIES=1)
    started = time.perf_counter()
    call(app)
    assert time.perf_counter() - started < 0.05
    app.flush(timeout=5)
    assert app.stats()["failed"] == 1


def run_script(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__)] + sys.path)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_exit_flushes_what_is_queued(collector: Any) -> None:
    done = run_script(f"""
        from moesif_integrations import MoesifMiddleware
        from wsgi_client import call
        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"bye"]
        mw = MoesifMiddleware(app, {{"APPLICATION_ID": "x", "BASE_URI": "{collector.url}",
                                   "EVENT_BATCH_TIMEOUT": 60}})
        for _ in range(25):
            call(mw)
    """)
    assert done.returncode == 0, done.stderr
    assert len(collector.wait_for_events(25)) == 25


def test_exit_with_a_hanging_collector_is_bounded(collector: Any) -> None:
    collector.hang()
    started = time.monotonic()
    done = run_script(f"""
        import logging
        logging.basicConfig(level=logging.WARNING)
        from moesif_integrations import MoesifMiddleware
        from wsgi_client import call
        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"bye"]
        mw = MoesifMiddleware(app, {{"APPLICATION_ID": "x", "BASE_URI": "{collector.url}",
                                   "SHUTDOWN_TIMEOUT": 1.5, "READ_TIMEOUT": 60}})
        for _ in range(10):
            call(mw)
    """)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 1.5 + 1.0 + 1.5  # budget + a second + interpreter start-up
    assert "10 events left unsent" in done.stderr
    collector.heal()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_delivers_its_own_events(wrap: Any, collector: Any) -> None:
    app = wrap()
    call(app, "GET", "/parent")
    assert app.flush(timeout=5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            for _ in range(5):
                call(app, "GET", "/child")
            code = 0 if app.flush(timeout=10) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    events = collector.wait_for_events(6)
    paths = sorted(e["request"]["uri"].rsplit("/", 1)[1] for e in events)
    assert paths == ["child"] * 5 + ["parent"]


def test_gzip_and_headers_on_the_wire(wrap: Any, collector: Any) -> None:
    app = wrap()
    call(app)
    app.flush(timeout=5)
    collector.wait_for_events(1)
    received = collector.last_request_headers("/v1/events/batch")
    assert received["content-encoding"] == "gzip"
    assert received["x-moesif-application-id"] == APP_ID
    assert received["user-agent"].startswith("moesif-integrations-python/")
    assert json.loads(json.dumps(received))  # plain strings


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_locks_held_at_fork_do_not_hang_the_child(wrap: Any, collector: Any) -> None:
    app = wrap()
    call(app)
    pipeline = app.pipeline
    assert pipeline is not None
    # Fork while another thread holds the counters' and the log limiter's locks.
    held = [pipeline.counters._lock, pipeline._problems._lock]
    for lock in held:
        lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                pipeline.counters.add("skipped")
                pipeline.call_hook("SKIP", lambda: 1 / 0)  # logs through the limiter
                call(app, "GET", "/child")
                code = 0 if app.flush(timeout=10) else 2
            finally:
                os._exit(code)
    finally:
        for lock in held:
            lock.release()
    started = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - started > 20:
            os.kill(pid, 9)
            pytest.fail("the forked child hung on a lock held at fork()")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    uris = [e["request"]["uri"] for e in collector.wait_for_events(2)]
    assert any(uri.endswith("/child") for uri in uris)


def test_exit_budget_is_shared_by_every_sender(collector: Any) -> None:
    # Two integrations and a queued profile update, all stuck on a hanging collector: the
    # at-exit flush takes one SHUTDOWN_TIMEOUT in all, not one per sender.
    collector.hang()
    started = time.monotonic()
    done = run_script(f"""
        from moesif_integrations import MoesifMiddleware
        from wsgi_client import call
        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"bye"]
        settings = {{"APPLICATION_ID": "x", "BASE_URI": "{collector.url}",
                    "SHUTDOWN_TIMEOUT": 2, "READ_TIMEOUT": 60}}
        first, second = MoesifMiddleware(app, settings), MoesifMiddleware(app, settings)
        for _ in range(5):
            call(first)
            call(second)
        first.update_user({{"user_id": "u-1"}})
    """)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 2 + 1.0 + 1.5  # one budget + a second + interpreter start-up
    collector.heal()


# ---------------------------------------------------------------------- the bounded queue


def make_queue(taken: List[List[str]], after_stop: Any = None, **changes: Any) -> BoundedQueue[str]:
    settings = Settings(
        application_id=APP_ID,
        event_queue_size=3,
        batch_size=10,
        event_batch_timeout=0.05,
        event_worker_count=1,
    )
    rules = replace(
        event_queue_rules(settings), max_bytes=100, due_items=2, due_bytes=100, what="things"
    )
    queue: BoundedQueue[str] = BoundedQueue(
        replace(rules, **changes),
        Counters(),
        lambda number: queue.serve(number, taken.append),
        shutdown_timeout=1.0,
        after_stop=after_stop,
    )
    return queue


def test_queue_refuses_beyond_either_bound_and_counts_it(caplog: Any) -> None:
    taken: List[List[str]] = []
    queue = make_queue(taken, max_wait=60.0, due_items=10)
    caplog.set_level(logging.WARNING, logger="moesif_integrations")
    assert queue.put("a", 10) and queue.put("b", 10)
    assert not queue.put("too big", 81)  # 101 bytes
    assert queue.put("c", 10)
    assert not queue.put("d", 1)  # a fourth item
    assert queue.accepted == 3 and queue.queued() == 3
    assert queue._counters.get("dropped_queue_full") == 2
    assert caplog.text.count("the queue of things is full or closed") == 1  # rate-limited
    assert queue.shutdown(5)
    assert [item for batch in taken for item in batch] == ["a", "b", "c"]
    assert not queue.put("after", 1)
    assert queue._counters.get("dropped_queue_full") == 3


def test_queue_put_all_queues_all_or_nothing() -> None:
    taken: List[List[str]] = []
    queue = make_queue(taken, max_wait=None, due_items=1, due_bytes=1)
    assert not queue.put_all(["a", "b", "c", "d"], [1, 1, 1, 1])
    assert queue._counters.get("dropped_queue_full") == 4 and queue.queued() == 0
    assert queue.put_all(["a", "b"], [1, 1])
    assert queue.flush(5)
    assert [item for batch in taken for item in batch] == ["a", "b"]


def test_queue_takes_a_lone_item_after_max_wait_and_a_due_batch_at_once() -> None:
    taken: List[List[str]] = []
    queue = make_queue(taken, max_wait=1.0)
    queue.put("lone", 1)
    time.sleep(0.1)
    assert taken == []  # neither due nor old enough yet
    deadline = time.monotonic() + 5
    while not taken and time.monotonic() < deadline:
        time.sleep(0.01)
    assert taken == [["lone"]]
    started = time.monotonic()
    queue.put("x", 1)
    queue.put("y", 1)  # due by count: consumer 0 is woken
    while len(taken) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert taken[1] == ["x", "y"] and time.monotonic() - started < 0.5
    queue.shutdown(1)


def test_queue_shutdown_gives_after_stop_what_is_left_of_the_budget() -> None:
    budgets: List[float] = []

    def after_stop(remaining: float) -> bool:
        budgets.append(remaining)
        return False

    queue = make_queue([], after_stop=after_stop)
    queue.put("a", 1)
    assert queue.shutdown(2.0) is False  # delivered here, not by what after_stop finished
    assert queue.closed and len(budgets) == 1 and 1.0 < budgets[0] <= 2.0


def test_a_consumer_bug_counts_its_batch_as_failed_and_the_thread_goes_on() -> None:
    handled: List[List[str]] = []

    def handle(batch: List[str]) -> None:
        if batch == ["bad"]:
            raise RuntimeError("bug")
        handled.append(batch)

    queue: BoundedQueue[str] = BoundedQueue(
        replace(make_queue([]).rules, due_items=1),
        Counters(),
        lambda number: queue.serve(number, handle),
        shutdown_timeout=1.0,
    )
    queue.put("bad", 1)
    queue.flush(5)  # False, unless the consumer failed the batch before the flush began
    queue.put("good", 1)
    assert queue.flush(5)
    assert handled == [["good"]] and queue._counters.get("failed") == 1
    queue.shutdown(1)


def test_a_busy_app_does_not_starve_its_senders_into_dropping(wrap: Any, collector: Any) -> None:
    # Requests back to back on the app's thread keep the CPU busy: past half the queue, the
    # request path lets the senders catch up instead of events being dropped.
    app = wrap(EVENT_QUEUE_SIZE=1000, BATCH_SIZE=100)
    requests = 8000
    for index in range(requests):
        call(app, "GET", f"/n/{index}")
    assert app.flush(timeout=30)
    stats = app.stats()
    assert stats["dropped_queue_full"] == 0 and stats["sent"] == requests
    assert len(collector.wait_for_events(requests, timeout=30)) == requests
