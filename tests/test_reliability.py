"""Reliability under volume, collector failures, memory pressure and bad inputs; exact counts.

Volume and failure tests call the middleware in-process (the collector is still real HTTP on
loopback); the memory test runs in a subprocess so its RSS is its own; bad inputs go through
real servers.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from servers import HttpReply, ServedApp, free_port, installed, raw_exchange, serve
from wsgi_client import call

from moesif_integrations import MoesifMiddleware
from moesif_integrations.collector import Collector

APP_ID = "reliability-app-id"
APP = "apps.wrapped:app"
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def json_app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    length = environ.get("CONTENT_LENGTH") or ""
    received = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"received": %d}' % len(received)]


@pytest.fixture
def wrap(middlewares: Callable[..., MoesifMiddleware]) -> Callable[..., MoesifMiddleware]:
    def factory(base_uri: str = "", **settings: Any) -> MoesifMiddleware:
        if base_uri:
            settings["BASE_URI"] = base_uri
        return middlewares(json_app, APP_ID, **settings)

    return factory


def assert_accounted(stats: Dict[str, int], requests: int) -> None:
    """Every request is in exactly one bucket, and nothing is left in the queue."""
    assert stats["queued"] == 0, stats
    assert stats["captured"] + stats["dropped_queue_full"] + stats["skipped"] == requests, stats
    assert (
        stats["captured"]
        == stats["sent"]
        + stats["failed"]
        + stats["sampled_out"]
        + stats["dropped_mask_error"]
        + stats["dropped_unserializable"]
        + stats["dropped_too_large"]
    ), stats


# ---------------------------------------------------------------------------------- volume


def test_twenty_thousand_requests_are_all_delivered_once(wrap: Any, collector: Any) -> None:
    total, threads = 20_000, 4
    # The queue holds the whole burst: the app threads outrun the senders for a moment.
    app = wrap(EVENT_QUEUE_SIZE=total, EVENT_BATCH_TIMEOUT=0.2)
    errors: List[BaseException] = []

    def client(number: int) -> None:
        try:
            for index in range(total // threads):
                body = b'{"client": %d, "n": %d}' % (number, index)
                result = call(app, "POST", f"/c{number}/{index}", body=body)
                assert result.status_code == 200
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    assert app.flush(timeout=60), app.stats()
    stats = app.stats()
    assert stats["sent"] == total and stats["failed"] == 0 and stats["dropped_queue_full"] == 0
    assert_accounted(stats, total)
    assert collector.event_count() == total
    events = collector.events()
    assert len({event["transaction_id"] for event in events}) == total
    assert len({event["request"]["uri"] for event in events}) == total


# ---------------------------------------------------------------------------------- failures


def test_collector_down_then_back_every_event_is_accounted_for(wrap: Any) -> None:
    port = free_port()
    first = Collector(port=port, db_path=":memory:").start()
    second: Optional[Collector] = None
    app = wrap(
        base_uri=f"http://127.0.0.1:{port}",
        BATCH_SIZE=50,
        MAX_RETRIES=2,
        RETRY_BACKOFF=0.05,
        RETRY_MAX_DELAY=0.1,
    )
    try:
        for index in range(300):
            call(app, "GET", f"/up/{index}")
        assert app.flush(timeout=10)
        first.stop()
        # Down for longer than a batch's retries can last (about 0.15 s): some batches fail.
        for index in range(200):
            call(app, "GET", f"/down/{index}")
            time.sleep(0.002)
        second = Collector(port=port, db_path=":memory:").start()
        for index in range(200):
            call(app, "GET", f"/back/{index}")
            time.sleep(0.001)
        assert app.flush(timeout=20), app.stats()
        stats = app.stats()
        assert_accounted(stats, 700)
        assert stats["failed"] > 0 and stats["retries"] > 0
        assert first.event_count() == 300
        assert first.event_count() + second.event_count() == stats["sent"]
        assert stats["sent"] >= 500  # all before the outage and after it
        delivered = [e["transaction_id"] for e in first.events() + second.events()]
        assert len(set(delivered)) == len(delivered)
    finally:
        first.close()
        if second is not None:
            second.close()


def test_503_with_retry_after_is_waited_out_and_retries_counted(wrap: Any, collector: Any) -> None:
    collector.fail(503, retry_after=1, count=3)
    app = wrap(BATCH_SIZE=100, EVENT_BATCH_TIMEOUT=60)
    started = time.monotonic()
    for index in range(1000):
        call(app, "GET", f"/n/{index}")
    assert app.flush(timeout=20), app.stats()
    elapsed = time.monotonic() - started
    stats = app.stats()
    assert stats["sent"] == 1000 and stats["failed"] == 0 and stats["retries"] == 3
    assert_accounted(stats, 1000)
    # Ten full batches, three of the posts answered 503 and sent again after the wait.
    assert collector.request_count("/v1/events/batch") == 13
    assert collector.event_count() == 1000
    assert len({e["transaction_id"] for e in collector.events()}) == 1000
    assert elapsed >= 1.0  # at least one Retry-After wait was honoured
    assert elapsed < 3 * 1 + 2  # three waits at most, in sequence


def test_retry_after_beyond_the_cap_waits_only_the_cap(wrap: Any, collector: Any) -> None:
    collector.fail(503, retry_after=120, count=1)
    app = wrap(RETRY_MAX_DELAY=0.5)
    for index in range(10):
        call(app, "GET", f"/n/{index}")
    started = time.monotonic()
    assert app.flush(timeout=10), app.stats()
    assert 0.4 <= time.monotonic() - started < 5
    stats = app.stats()
    assert stats["sent"] == 10 and stats["retries"] == 1
    assert collector.event_count() == 10


def test_a_full_queue_is_sent_at_once_rather_than_dropping(wrap: Any, collector: Any) -> None:
    app = wrap(EVENT_QUEUE_SIZE=50, BATCH_SIZE=100, EVENT_BATCH_TIMEOUT=1.0)
    for index in range(200):  # 0.2 s at most: well within the batch timeout
        call(app, "GET", f"/n/{index}")
        time.sleep(0.001)
    assert app.flush(timeout=10)
    stats = app.stats()
    assert_accounted(stats, 200)
    assert stats["dropped_queue_full"] == 0, stats


LAZY_IMPORT_SCRIPT = """
import sys
from wsgi_client import call
from moesif_integrations import MoesifMiddleware

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"ok": true}']

middleware = MoesifMiddleware(app, {"APPLICATION_ID": "x", "BASE_URI": sys.argv[1],
                                    "EVENT_BATCH_TIMEOUT": 60})
call(middleware, "POST", "/x", body=b'{"a": 1}', headers={"Content-Type": "application/json"})
before = set(sys.modules)
assert middleware.flush(10)
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_first_delivery_imports_no_module(collector: Any) -> None:
    # A module a sender thread imports can be half-imported in a child forked meanwhile (gunicorn
    # --preload after the master sent events); the child can then never import it. The idna
    # codec, which getaddrinfo() loads on the first connection, broke every connection that way.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR, *sys.path])
    done = subprocess.run(
        [sys.executable, "-c", LAZY_IMPORT_SCRIPT, collector.url],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert collector.event_count() == 1
    assert done.stdout.split() == []


# ---------------------------------------------------------------------------------- memory

MEMORY_SCRIPT = """
import gc, json, sys
import psutil
from wsgi_client import call
from moesif_integrations import MoesifMiddleware

def app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"received": %d}' % len(body)]

settings = json.loads(sys.argv[1])
middleware = MoesifMiddleware(app, settings)
body = bytes(range(256)) * 4  # 1 KiB, binary
process = psutil.Process()
gc.collect()
before = process.memory_info().rss
for _ in range(int(sys.argv[2])):
    call(middleware, "POST", "/upload", body=body,
         headers={"Content-Type": "application/octet-stream"})
gc.collect()
after = process.memory_info().rss
print(json.dumps({"before": before, "after": after, "stats": middleware.stats()}))
"""

MIB = 1024 * 1024
# What one queued 1 KiB-body event may really take, Python objects included (the incumbent
# took 14.7 KB), and allocator and thread slack that does not grow with the queue.
PER_EVENT_BYTES = 4096
FIXED_SLACK_BYTES = 10 * MIB


@pytest.mark.parametrize(
    ("queue_size", "queue_max_bytes"),
    [
        pytest.param(10_000, 5_000_000, id="bytes-bound"),
        pytest.param(5_000, 50_000_000, id="count-bound"),
    ],
)
def test_memory_stays_bounded_while_the_collector_is_down(
    queue_size: int, queue_max_bytes: int
) -> None:
    requests, workers, batch = 20_000, 2, 100
    settings = {
        "APPLICATION_ID": APP_ID,
        "BASE_URI": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "EVENT_QUEUE_SIZE": queue_size,
        "EVENT_QUEUE_MAX_BYTES": queue_max_bytes,
        "EVENT_WORKER_COUNT": workers,
        "BATCH_SIZE": batch,
        # Each sender takes one batch, fails to connect and waits at least 30 s (half of the
        # backoff, the jitter's floor) before its next attempt: exactly workers * batch events
        # are in flight for the whole run.
        "MAX_RETRIES": 20,
        "RETRY_BACKOFF": 60,
        "RETRY_MAX_DELAY": 60,
        "SHUTDOWN_TIMEOUT": 0,
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR, *sys.path])
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, json.dumps(settings), str(requests)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stats = result["stats"]
    growth = result["after"] - result["before"]
    print(f"RSS growth over {requests} requests: {growth / MIB:.1f} MiB ({stats})")

    in_flight = workers * batch
    held = stats["captured"] - in_flight  # in the queue proper
    assert stats["sent"] == 0 and stats["failed"] == 0
    assert stats["queued"] == stats["captured"]  # nothing lost, nothing left the process
    assert stats["dropped_queue_full"] == requests - stats["captured"]
    if queue_max_bytes >= queue_size * PER_EVENT_BYTES:
        # The count bound binds: the queue is full, and each sender that has taken its batch
        # by now (a sender wakes on its own schedule) holds exactly one more.
        assert held <= queue_size
        assert stats["captured"] - queue_size in range(0, in_flight + 1, batch)
    else:
        # The byte bound binds before the count bound; each event counts at least its body.
        assert held < queue_size
        assert queue_max_bytes // PER_EVENT_BYTES <= held <= queue_max_bytes // 1024
    # Bounded by the settings, whatever the number of requests: the incumbent grew by 289 MiB.
    bound = (
        min(queue_size * PER_EVENT_BYTES, 2 * queue_max_bytes)
        + in_flight * PER_EVENT_BYTES
        + FIXED_SLACK_BYTES
    )
    assert growth < bound, (growth / MIB, bound / MIB)


# ---------------------------------------------------------------------------------- bad inputs

HOOKS_ENV = {
    "MOESIF_SKIP": "apps.hooks:skip_when_asked",
    "MOESIF_IDENTIFY_USER": "apps.hooks:user_from_header",
    "MOESIF_IDENTIFY_COMPANY": "apps.hooks:company_from_header",
    "MOESIF_GET_METADATA": "apps.hooks:pid_metadata",
    "MOESIF_MASK_EVENT_MODEL": "apps.hooks:mask_fails_on_some_paths",
}
# Headers that differ between two answers for reasons other than the middleware.
VOLATILE_HEADERS = {"date", "x-moesif-transaction-id"}


def served_env(collector: Collector) -> Dict[str, str]:
    env = {
        "MOESIF_APPLICATION_ID": APP_ID,
        "MOESIF_BASE_URI": collector.url,
        "MOESIF_EVENT_BATCH_TIMEOUT": "0.05",
    }
    env.update(HOOKS_ENV)
    return env


@pytest.fixture(scope="module")
def waitress_app(tmp_path_factory: Any) -> Iterator[Tuple[ServedApp, Collector]]:
    """One waitress server for all the bad inputs (it must survive each of them)."""
    if not installed("waitress"):
        pytest.skip("waitress is not installed")
    running = Collector(port=0, db_path=":memory:").start()
    log_dir = str(tmp_path_factory.mktemp("waitress"))
    try:
        with serve("waitress", APP, served_env(running), log_dir=log_dir) as app:
            yield app, running
    finally:
        running.close()


class BadInputs:
    def __init__(self, served: ServedApp, collector: Collector) -> None:
        self.served = served
        self.collector = collector
        self.before = served.stats()["stats"]

    def both(self, method: str, path: str, **kwargs: Any) -> HttpReply:
        """Sends the request to the bare and the wrapped app; their answers must be alike."""
        bare = self.served.request(method, "/bare" + path, **kwargs)
        wrapped = self.served.request(method, path, **kwargs)
        assert_same_answer(bare, wrapped)
        return wrapped

    def both_raw(self, request: Callable[[bytes], bytes]) -> Tuple[bytes, bytes]:
        """Sends ``request(b"/bare")`` and ``request(b"")`` as raw bytes; the status lines and
        bodies of the answers must be alike. Returns the wrapped app's (status line, body)."""
        bare = status_and_body(raw_exchange(self.served.port, request(b"/bare")))
        wrapped = status_and_body(raw_exchange(self.served.port, request(b"")))
        assert wrapped == bare
        return wrapped

    def events(self, recorded: int) -> List[Dict[str, Any]]:
        """What reached the collector once ``recorded`` more exchanges were recorded and
        everything queued was delivered."""
        self.served.wait_recorded(recorded_so_far(self.before) + recorded)
        assert self.served.flush()["flushed"] is True
        events: List[Dict[str, Any]] = self.collector.events()
        return events

    def stats_change(self) -> Dict[str, int]:
        after = self.served.stats()["stats"]
        return {key: after[key] - self.before[key] for key in after if key != "queued"}


def recorded_so_far(stats: Dict[str, int]) -> int:
    return stats["captured"] + stats["dropped_queue_full"] + stats["skipped"]


@pytest.fixture
def bad(waitress_app: Tuple[ServedApp, Collector]) -> Iterator[BadInputs]:
    served, running = waitress_app
    running.reset()
    probe = BadInputs(served, running)
    yield probe
    # Whatever the input was, the server goes on serving.
    before = served.stats()["stats"]
    reply = served.request("GET", "/items/after")
    assert reply.status == 200 and reply.json() == {"id": "after"}
    # Delivered now, so that it cannot reach the next test's collector.
    served.wait_recorded(recorded_so_far(before) + 1)
    report = served.flush()
    assert report["flushed"] is True and report["stats"]["capture_errors"] == 0


def assert_same_answer(bare: HttpReply, wrapped: HttpReply) -> None:
    assert wrapped.status == bare.status
    assert wrapped.body == bare.body
    assert wrapped.complete == bare.complete
    strip = {key: value for key, value in bare.headers.items() if key not in VOLATILE_HEADERS}
    assert {k: v for k, v in wrapped.headers.items() if k not in VOLATILE_HEADERS} == strip
    if "x-moesif-transaction-id" in wrapped.headers:
        assert "x-moesif-transaction-id" not in bare.headers


def test_invalid_json_with_a_json_content_type(bad: BadInputs) -> None:
    body = b'{"a": 1, "b": '
    reply = bad.both("POST", "/echo", body=body, headers={"Content-Type": "application/json"})
    assert reply.status == 400
    (event,) = bad.events(recorded=1)
    assert event["response"]["status"] == 400
    assert event["request"]["transfer_encoding"] == "base64"
    assert base64.b64decode(event["request"]["body"]) == body
    assert event["response"]["body"]["error"].startswith("bad JSON")


def test_binary_body(bad: BadInputs) -> None:
    body = bytes(range(256)) * 64
    headers = {"Content-Type": "application/octet-stream"}
    reply = bad.both("POST", "/echo", body=body, headers=headers)
    assert reply.json()["sha256"] == hashlib.sha256(body).hexdigest()
    (event,) = bad.events(recorded=1)
    assert event["request"]["transfer_encoding"] == "base64"
    assert base64.b64decode(event["request"]["body"]) == body


def test_twenty_megabyte_upload(bad: BadInputs) -> None:
    body = os.urandom(20 * 1024 * 1024)
    headers = {"Content-Type": "application/octet-stream"}
    reply = bad.both("POST", "/echo", body=body, headers=headers, timeout=60)
    # The app still reads every byte.
    assert reply.json()["size"] == len(body)
    assert reply.json()["sha256"] == hashlib.sha256(body).hexdigest()
    (event,) = bad.events(recorded=1)
    marker = event["request"]["body"]
    assert marker["moesif_body_truncated"] is True
    assert marker["size"] == len(body) and marker["limit"] == 100_000


CHUNKS = [bytes([n]) * 1000 for n in range(64)]


def send_chunked(served: ServedApp) -> HttpReply:
    headers = {"Content-Type": "application/octet-stream"}
    # An iterator goes out as Transfer-Encoding: chunked, without Content-Length.
    bare = served.request("PUT", "/bare/echo", body=iter(CHUNKS), headers=headers)
    wrapped = served.request("PUT", "/echo", body=iter(CHUNKS), headers=headers)
    assert_same_answer(bare, wrapped)
    assert wrapped.json()["size"] == 64_000
    return wrapped


def test_chunked_upload_without_content_length(bad: BadInputs) -> None:
    # waitress reads the chunks itself and hands the app a Content-Length.
    send_chunked(bad.served)
    (event,) = bad.events(recorded=1)
    assert base64.b64decode(event["request"]["body"]) == b"".join(CHUNKS)


@pytest.mark.skipif(not installed("gunicorn"), reason="gunicorn is not installed")
def test_chunked_upload_reaches_the_app_as_a_stream(collector: Any, tmp_path: Any) -> None:
    # gunicorn hands the app the chunked stream as it is: no CONTENT_LENGTH in the environ.
    with serve("gunicorn", APP, served_env(collector), log_dir=str(tmp_path)) as served:
        send_chunked(served)
        served.wait_recorded(1)
        assert served.flush()["flushed"] is True
        (event,) = collector.events()
    assert event["request"]["headers"]["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in event["request"]["headers"]
    assert base64.b64decode(event["request"]["body"]) == b"".join(CHUNKS)


def test_gzip_encoded_json_request_body(bad: BadInputs) -> None:
    document = {"zipped": [1, 2, 3], "name": "gzip"}
    body = gzip.compress(json.dumps(document).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    reply = bad.both("POST", "/echo", body=body, headers=headers)
    assert reply.json()["json"] == document
    (event,) = bad.events(recorded=1)
    assert event["request"]["body"] == document


def non_numeric_content_length(prefix: bytes) -> bytes:
    return (
        b"POST " + prefix + b"/echo HTTP/1.1\r\nHost: bad.example\r\n"
        b"Content-Type: text/plain\r\nContent-Length: twelve\r\nConnection: close\r\n\r\nhello"
    )


def status_and_body(raw: bytes) -> Tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


def test_non_numeric_content_length_refused_by_the_server(bad: BadInputs) -> None:
    # waitress refuses the request itself; the app (and so the middleware) never sees it.
    status, _body = bad.both_raw(non_numeric_content_length)
    assert status.startswith(b"HTTP/1.1 400")
    time.sleep(0.2)  # an event, if one were recorded, would be queued by now
    assert bad.events(recorded=0) == []
    assert bad.stats_change()["captured"] == 0


def test_non_numeric_content_length_passed_to_the_app(collector: Any, tmp_path: Any) -> None:
    # wsgiref hands the header to the app as it came: the middleware must cope with it.
    with serve("wsgiref", APP, served_env(collector), log_dir=str(tmp_path)) as served:
        bare = raw_exchange(served.port, non_numeric_content_length(b"/bare"))
        wrapped = raw_exchange(served.port, non_numeric_content_length(b""))
        assert status_and_body(wrapped) == status_and_body(bare)
        assert json.loads(status_and_body(wrapped)[1])["size"] == 5  # read to the end
        served.wait_recorded(1)
        assert served.request("GET", "/items/next").status == 200
        served.wait_recorded(2)
        report = served.flush()
        assert report["flushed"] is True and report["stats"]["capture_errors"] == 0
    by_path = {e["request"]["uri"].rsplit("/", 1)[1]: e for e in collector.events()}
    assert sorted(by_path) == ["echo", "next"]
    echo = by_path["echo"]
    assert echo["request"]["headers"]["Content-Length"] == "twelve"
    assert base64.b64decode(echo["request"]["body"]) == b"hello"
    assert echo["response"]["status"] == 200


def test_non_utf8_header_bytes(bad: BadInputs) -> None:
    def request(prefix: bytes) -> bytes:
        return (
            b"GET " + prefix + b"/items/7 HTTP/1.1\r\nHost: bad.example\r\n"
            b"X-Name: caf\xe9 \xff\xfe\r\nX-Test-User: user-\xe9\r\nConnection: close\r\n\r\n"
        )

    status, _body = bad.both_raw(request)
    assert status == b"HTTP/1.1 200 OK"
    (event,) = bad.events(recorded=1)
    assert event["request"]["uri"] == "http://bad.example/items/7"
    name = event["request"]["headers"]["X-Name"]
    assert isinstance(name, str) and name.startswith("caf")
    assert isinstance(event["user_id"], str) and event["user_id"].startswith("user-")


def test_app_raising_before_start_response(bad: BadInputs) -> None:
    reply = bad.both("GET", "/boom-before")
    assert reply.status == 500
    (event,) = bad.events(recorded=1)
    assert event["response"]["status"] == 500
    assert event["request"]["uri"].endswith("/boom-before")


def test_app_raising_while_iterating(bad: BadInputs) -> None:
    reply = bad.both("GET", "/boom-during")
    # The status line was sent before the app failed; the server cut the body short.
    assert reply.status == 200 and reply.body == b"partial" and not reply.complete
    (event,) = bad.events(recorded=1)
    assert event["response"]["status"] == 500


def test_hooks_that_raise(bad: BadInputs) -> None:
    identified = bad.both("GET", "/items/1", headers={"X-Test-User": "u-1", "X-Test-Company": "c"})
    failing = bad.both("GET", "/items/2", headers={"X-Test-User": "u-2", "X-Test-Hooks-Raise": "1"})
    assert identified.status == failing.status == 200
    by_path = {e["request"]["uri"].rsplit("/", 1)[1]: e for e in bad.events(recorded=2)}
    first, second = by_path["1"], by_path["2"]
    assert first["user_id"] == "u-1" and first["company_id"] == "c"
    assert first["metadata"]["pid"] == bad.served.process.pid
    # SKIP, IDENTIFY_USER, IDENTIFY_COMPANY and GET_METADATA raised: counted, request recorded.
    assert second["user_id"] is None and second["company_id"] is None
    assert second["metadata"] is None
    change = bad.stats_change()
    assert change["hook_errors"] == 4 and change["skipped"] == 0 and change["sent"] == 2


def test_mask_event_model_that_raises(bad: BadInputs) -> None:
    reply = bad.both("GET", "/mask-fails/1")
    assert reply.status == 200 and reply.json() == {"path": "/mask-fails/1"}
    bad.both("GET", "/items/3")
    # Only the other request's event arrives: masking failed closed.
    (event,) = bad.events(recorded=2)
    assert event["request"]["uri"].endswith("/items/3")
    change = bad.stats_change()
    assert change["dropped_mask_error"] == 1 and change["sent"] == 1 and change["captured"] == 2
