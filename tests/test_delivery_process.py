"""DELIVERY_PROCESS: events built and sent by a process of their own, with the same result on
the wire, the same counters, flush and shutdown, and a fallback when that process fails."""

from __future__ import annotations

import logging
import os
import signal
import textwrap
import time
from typing import Any, Callable, Dict, List, Tuple

import psutil
import pytest
from test_delivery import run_script
from wsgi_client import call

from moesif_integrations import MoesifMiddleware
from moesif_integrations.collector import Collector
from moesif_integrations.core.delivery import pipe, process
from moesif_integrations.core.delivery.process import ProcessDelivery
from moesif_integrations.core.record import ExchangeRecord

APP_ID = "process-app-id"


class OddText(str):
    """A str subclass: marshal refuses it, so its event is encoded in the app's process."""


def api(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    body = environ["wsgi.input"].read()
    headers = [("Content-Type", "application/json")]
    if environ["PATH_INFO"] == "/odd":
        headers.append(("X-Odd", OddText("odd value")))
    start_response("201 Created", headers)
    return [b'{"echo": ' + (body or b"null") + b"}"]


def delivery_counts(app: MoesifMiddleware) -> Tuple[int, int, int, int]:
    """(captured, sent, failed, queued) from the app's stats()."""
    stats = app.stats()
    return stats["captured"], stats["sent"], stats["failed"], stats["queued"]


def delivery_pid(app: MoesifMiddleware) -> int:
    assert app.pipeline is not None
    delivery = app.pipeline.delivery
    assert isinstance(delivery, ProcessDelivery)
    process = delivery.process
    assert process is not None
    return process.pid


def comparable(event: Dict[str, Any]) -> Dict[str, Any]:
    """An event without what differs between two runs of the same request (ids, times)."""
    request, response = dict(event["request"]), dict(event["response"])
    request.pop("time")
    response.pop("time")
    response["headers"] = {
        k: v for k, v in response["headers"].items() if k != "X-Moesif-Transaction-Id"
    }
    request["headers"] = {
        k: v for k, v in request["headers"].items() if k != "X-Moesif-Transaction-Id"
    }
    rest = {k: v for k, v in event.items() if k not in ("request", "response", "transaction_id")}
    return {"request": request, "response": response, **rest}


def send_varied_requests(app: MoesifMiddleware) -> None:
    call(app, "GET", "/items/1", query="q=1", headers={"Authorization": "Bearer abc.def"})
    call(
        app,
        "POST",
        "/items",
        body=b'{"name": "widget", "password": "x"}',
        headers={"Content-Type": "application/json"},
    )
    call(app, "POST", "/bin", body=bytes(range(256)), headers={"Content-Type": "image/png"})
    call(app, "GET", "/odd")


def test_events_on_the_wire_are_the_same_as_from_sender_threads(
    middlewares: Callable[..., MoesifMiddleware], collector: Collector
) -> None:
    options = {
        "REQUEST_BODY_MASKS": ["password"],
        "API_VERSION": "2.1",
        # Without it each process draws its own key: fingerprints would differ.
        "MASK_FINGERPRINT_KEY": "shared by every process of this app",
    }
    threads = middlewares(api, APP_ID, **options)
    send_varied_requests(threads)
    assert threads.flush(timeout=10)
    expected = [comparable(e) for e in collector.wait_for_events(4)]
    collector.reset()

    process = middlewares(api, APP_ID, DELIVERY_PROCESS=True, **options)
    send_varied_requests(process)
    assert process.flush(timeout=20)
    assert delivery_pid(process) != os.getpid()
    received = [comparable(e) for e in collector.wait_for_events(4)]
    assert sorted(received, key=repr) == sorted(expected, key=repr)
    assert received[3]["response"]["headers"]["X-Odd"] == "odd value"
    assert delivery_counts(process) == (4, 4, 0, 0)


def test_many_events_are_all_delivered_and_counted(
    middlewares: Callable[..., MoesifMiddleware], collector: Collector
) -> None:
    app = middlewares(api, APP_ID, DELIVERY_PROCESS=True, BATCH_SIZE=50)
    for index in range(3000):
        call(app, "GET", f"/n/{index}")
    assert app.flush(timeout=30)
    events = collector.wait_for_events(3000)
    assert sorted(int(e["request"]["uri"].rsplit("/", 1)[1]) for e in events) == list(range(3000))
    assert delivery_counts(app) == (3000, 3000, 0, 0)
    assert collector.request_count("/v1/events/batch") >= 3000 // 50


def test_mask_event_model_runs_in_the_app_process(
    middlewares: Callable[..., MoesifMiddleware], collector: Collector
) -> None:
    seen_in: List[int] = []

    def mask(event_model: Any) -> Any:
        seen_in.append(os.getpid())
        event_model.request.headers = {"masked": "yes"}
        return event_model

    app = middlewares(api, APP_ID, DELIVERY_PROCESS=True, MASK_EVENT_MODEL=mask)
    call(app, "GET", "/secret", headers={"X-Secret": "s3cr3t"})
    assert app.flush(timeout=20)
    (event,) = collector.wait_for_events(1)
    assert event["request"]["headers"] == {"masked": "yes"}
    assert seen_in == [os.getpid()]
    assert delivery_pid(app) != os.getpid()


def test_collector_failures_are_counted_and_logged_in_the_app_process(
    middlewares: Callable[..., MoesifMiddleware],
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector.fail(401, all=True)
    app = middlewares(api, APP_ID, DELIVERY_PROCESS=True)
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        for _ in range(3):
            call(app)
        app.flush(timeout=20)  # the queue empties: the events were given up
        deadline = time.monotonic() + 5
        while "401" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "refused the application id (401)" in caplog.text
    stats = app.stats()
    assert (stats["sent"], stats["failed"], stats["queued"]) == (0, 3, 0)
    collector.heal()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_delivery_process_is_counted_and_replaced(
    middlewares: Callable[..., MoesifMiddleware],
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = middlewares(api, APP_ID, DELIVERY_PROCESS=True)
    call(app, "GET", "/before")
    assert app.flush(timeout=20)
    first = delivery_pid(app)
    collector.hang(all=True)  # the next events stay in the delivery process
    for _ in range(5):
        call(app, "GET", "/held")
    collector.wait_for_requests(2)  # the delivery process sent them: they are its to lose
    deadline = time.monotonic() + 10
    while app.stats()["queued"] != 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.stats()["queued"] == 5
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "exited unexpectedly" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert "exited unexpectedly" in caplog.text
    assert app.stats()["failed"] == 5
    collector.heal()
    call(app, "GET", "/after")
    assert app.flush(timeout=20)
    assert delivery_pid(app) != first
    uris = [e["request"]["uri"].rsplit("/", 1)[1] for e in collector.wait_for_events(2)]
    assert sorted(uris) == ["after", "before"]
    assert delivery_counts(app) == (7, 2, 5, 0)


def test_a_stopped_delivery_process_never_blocks_the_app(
    middlewares: Callable[..., MoesifMiddleware], collector: Collector
) -> None:
    # While the delivery process is stopped the pipe fills and the hand-off waits on it:
    # requests go on, this process's helper senders deliver what waits too long, and what
    # even they cannot take in time is dropped and counted.
    app = middlewares(api, APP_ID, DELIVERY_PROCESS=True, EVENT_QUEUE_SIZE=100)
    call(app, "GET", "/first")
    assert app.flush(timeout=20)
    pid = delivery_pid(app)
    requests = 3000
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 60
        for number in range(requests):
            assert call(app, "GET", f"/{number}").status_code == 201
            assert time.monotonic() < deadline, f"request {number} waited on delivery"
        stats = app.stats()
        assert stats["captured"] + stats["dropped_queue_full"] == requests + 1
        # Delivered from here while the delivery process could not take them.
        collector.wait_for_events(1 + 100, timeout=20)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert app.flush(timeout=30)
    stats = app.stats()
    # Every request was delivered or counted as dropped (by either process's bounded queue).
    assert stats["sent"] + stats["dropped_queue_full"] == requests + 1
    assert stats["failed"] == 0 and stats["queued"] == 0
    assert len(collector.wait_for_events(stats["sent"])) == stats["sent"]


def test_shutdown_ends_the_delivery_process(
    middlewares: Callable[..., MoesifMiddleware], collector: Collector
) -> None:
    app = middlewares(api, APP_ID, DELIVERY_PROCESS=True)
    for _ in range(10):
        call(app)
    assert app.pipeline is not None
    delivery = app.pipeline.delivery
    assert isinstance(delivery, ProcessDelivery)
    deadline = time.monotonic() + 20
    while delivery.process is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process = delivery.process
    assert process is not None
    assert app.shutdown(timeout=10)
    assert process.popen.poll() == 0
    assert len(collector.wait_for_events(10)) == 10
    assert app.stats()["sent"] == 10


def test_falls_back_to_sending_from_the_app_process(
    middlewares: Callable[..., MoesifMiddleware],
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A delivery process that cannot start (here: its module does not exist).
    monkeypatch.setattr(process, "_CHILD_MODULE", "moesif_integrations.no_such_module")
    app = middlewares(api, APP_ID, DELIVERY_PROCESS=True)
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        for _ in range(4):
            call(app)
        assert app.flush(timeout=30)
    events = collector.wait_for_events(4)
    assert len(events) == 4
    # Queued as marshal bytes for the delivery process, turned back into whole events here.
    assert [(e["request"]["verb"], e["response"]["status"]) for e in events] == [("GET", 201)] * 4
    assert app.stats()["sent"] == 4
    assert caplog.text.count("DELIVERY_PROCESS: it exited at start") == 1


def run_app_script(collector: Collector, body: str) -> Any:
    """Runs ``body`` in a new interpreter after it wrapped an app in a middleware ``mw`` with
    DELIVERY_PROCESS on and a 60 s batch timeout (only an exit or a flush sends a batch)."""
    prelude = f"""
        from moesif_integrations import MoesifMiddleware
        from wsgi_client import call
        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"bye"]
        mw = MoesifMiddleware(app, {{"APPLICATION_ID": "x", "BASE_URI": "{collector.url}",
                                   "EVENT_BATCH_TIMEOUT": 60, "DELIVERY_PROCESS": True}})
    """
    return run_script(textwrap.dedent(prelude) + textwrap.dedent(body))


def test_exit_of_the_app_process_delivers_what_it_captured(collector: Collector) -> None:
    done = run_app_script(
        collector,
        """
        for _ in range(300):
            call(mw)
        print(mw.pipeline.delivery.process and mw.pipeline.delivery.process.pid)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert len(collector.wait_for_events(300)) == 300
    printed = done.stdout.strip()
    if printed != "None":  # the hand-off had started the process before exit: it is gone now
        with pytest.raises(ProcessLookupError):
            os.kill(int(printed), 0)


def test_record_round_trip_keeps_every_fact() -> None:
    record = ExchangeRecord(
        1.5, "POST", "https", "h:8443", "/p", "a=1", [("HTTP_X", "y")], True, "10.0.0.1", "tid"
    )
    record.response_time = 2.5
    record.status = 201
    record.response_headers = [("Content-Type", "text/plain")]
    rare = {
        "direction": "Outgoing",
        "request_body": b"in",
        "request_body_size": 2,
        "response_body": b"out",
        "response_body_size": 3,
        "user_id": "u",
        "company_id": "c",
        "session_token": "s",
        "metadata": {"k": [1, 2.5, None, True]},
        "route": "/p",
        "blocked_by": "rule",
        "weight": 7,
        "sample_rate": 14.0,
    }
    assert set(rare) == pipe.RARE_FIELDS
    for name, value in rare.items():
        setattr(record, name, value)
    payload = pipe.dumps([pipe.record_bytes(record)])
    (copy,) = [pipe.record_from_bytes(data) for data in pipe.loads(payload)]
    names = [n for n in ExchangeRecord.__slots__ if n != "__dict__"] + sorted(rare)
    assert {n: getattr(copy, n) for n in names} == {n: getattr(record, n) for n in names}
    # Fields a record class declares are all known to the wire.
    declared = {
        name
        for name, value in vars(ExchangeRecord).items()
        if not name.startswith("_") and not callable(value) and name not in ExchangeRecord.__slots__
    }
    assert declared == pipe.RARE_FIELDS


def test_a_lone_event_leaves_within_the_batch_timeout(
    middlewares: Callable[..., MoesifMiddleware], collector: Collector
) -> None:
    app = middlewares(api, APP_ID, DELIVERY_PROCESS=True, EVENT_BATCH_TIMEOUT=0.3)
    call(app, "GET", "/start")
    assert app.flush(timeout=20)  # the delivery process is running
    started = time.monotonic()
    call(app, "GET", "/alone")
    collector.wait_for_events(2, timeout=5)
    # The hand-off (10 ms) and the batch timeout (0.3 s), not a second of either.
    assert time.monotonic() - started < 1.0


def test_an_embedded_interpreter_sends_from_the_app_process(
    middlewares: Callable[..., MoesifMiddleware],
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under uWSGI sys.executable is the server binary: it must never be started as a child.
    monkeypatch.setattr(process.sys, "executable", "/usr/bin/uwsgi")
    app = middlewares(api, APP_ID, DELIVERY_PROCESS=True)
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        call(app)
        assert app.flush(timeout=10)
    assert len(collector.wait_for_events(1)) == 1
    assert "'/usr/bin/uwsgi') is not a Python interpreter" in caplog.text
    assert app.pipeline is not None
    delivery = app.pipeline.delivery
    assert isinstance(delivery, ProcessDelivery) and delivery.process is None


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_app_process_leaves_its_delivery_process_to_deliver(
    collector: Collector,
) -> None:
    # The app's process hands its events off, then dies without any at-exit flush. The delivery
    # process holds them (a 60 s batch timeout), sees its pipe close and delivers them.
    done = run_app_script(
        collector,
        """
        import os, signal
        for _ in range(40):
            call(mw)
        delivery = mw.pipeline.delivery
        assert delivery.queue.flush(20)  # handed off, not yet sent
        print(delivery.process.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    orphan = int(done.stdout.strip())
    assert len(collector.wait_for_events(40, timeout=15)) == 40
    deadline = time.monotonic() + 10
    while not exited(orphan):
        if time.monotonic() > deadline:
            pytest.fail("the delivery process outlived its app's process")
        time.sleep(0.05)


def exited(pid: int) -> bool:
    """True once the process is gone, or a zombie its new parent has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_delivery_process_that_is_never_ready_loses_nothing(
    middlewares: Callable[..., MoesifMiddleware],
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A delivery process starved of CPU (its start-up not finished): this process sends the
    # events itself meanwhile, and nothing waits on the delivery process.
    monkeypatch.setattr(process, "_CHILD_MODULE", "apps.silent_child")
    app = middlewares(api, APP_ID, DELIVERY_PROCESS=True, BATCH_SIZE=50)
    started = time.monotonic()
    for index in range(500):
        call(app, "GET", f"/n/{index}")
    assert app.flush(timeout=20)
    assert time.monotonic() - started < 10
    assert len(collector.wait_for_events(500)) == 500
    assert delivery_counts(app) == (500, 500, 0, 0)
    assert app.pipeline is not None
    delivery = app.pipeline.delivery
    assert isinstance(delivery, ProcessDelivery)
    starting = delivery.process
    assert starting is not None and not starting.ready  # it never was


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
def test_one_usable_cpu_means_no_delivery_process(collector: Collector) -> None:
    # Pinned to one CPU, a delivery process could only run in the app's time: the app's
    # process delivers, and says so once.
    done = run_script(
        f"""
        import os
        os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})
        import logging
        logging.basicConfig(level=logging.WARNING)
        from moesif_integrations import MoesifMiddleware
        from wsgi_client import call
        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"ok"]
        mw = MoesifMiddleware(app, {{"APPLICATION_ID": "x", "BASE_URI": "{collector.url}",
                                   "DELIVERY_PROCESS": True}})
        for _ in range(300):
            call(mw)
        assert mw.flush(timeout=20)
        assert mw.pipeline.delivery.process is None
        print(mw.stats()["sent"])
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "300"
    assert done.stderr.count("may use 1 CPU") == 1
    assert len(collector.wait_for_events(300)) == 300
