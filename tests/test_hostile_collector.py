"""A collector (or what stands in its place) that misbehaves: answers that never end or trickle
in, batches refused for one bad event, events too large to send, client data that would blow
the queue's byte bound, and what flush() says about it all."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import pytest
from wsgi_client import call

from moesif_integrations import MoesifMiddleware
from moesif_integrations.core.config.schema import Settings
from moesif_integrations.core.delivery.transport import MAX_ANSWER_BYTES, Transport
from moesif_integrations.core.record import ExchangeRecord

APP_ID = "hostile-collector-app"


def hello(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"hello": "world"}']


class RawServer:
    """A loopback TCP server that reads each request's head and body, then lets ``answer``
    write whatever it likes to the socket."""

    def __init__(self, answer: Callable[[socket.socket, bytes], None]) -> None:
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.requests = 0
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            reader = conn.makefile("rb")
            while not self._stopped.is_set():
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = reader.read(length)
                self.requests += 1
                try:
                    self._answer(conn, body)
                except OSError:
                    return

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()


@pytest.fixture
def raw_server() -> Any:
    servers: List[RawServer] = []

    def make(answer: Callable[[socket.socket, bytes], None]) -> RawServer:
        server = RawServer(answer)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def settings_for(url: str, **options: Any) -> Settings:
    return Settings.resolve({"APPLICATION_ID": APP_ID, "BASE_URI": url, **options}, {})


def endless_body(conn: socket.socket, _body: bytes) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n")
    chunk = b"x" * 65536
    while True:
        conn.sendall(chunk)


def trickle(conn: socket.socket, _body: bytes) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while True:
        conn.sendall(b"X-A: b\r\n")
        time.sleep(0.2)


def test_an_endless_answer_is_read_up_to_the_cap(raw_server: Any) -> None:
    server = raw_server(endless_body)
    with Transport(settings_for(server.url, READ_TIMEOUT=5)) as transport:
        started = time.monotonic()
        response = transport.request_once("POST", "/v1/events/batch", b"[]")
    assert time.monotonic() - started < 5
    assert response.status == 200 and len(response.body) == MAX_ANSWER_BYTES


def test_an_answer_that_trickles_in_fails_at_the_deadline_and_is_retried(raw_server: Any) -> None:
    server = raw_server(trickle)
    options = {"READ_TIMEOUT": 0.6, "MAX_RETRIES": 1, "RETRY_BACKOFF": 0.05}
    with Transport(settings_for(server.url, **options)) as transport:
        started = time.monotonic()
        response = transport.request("POST", "/v1/events/batch", b"[]")
    elapsed = time.monotonic() - started
    # Each attempt ends at READ_TIMEOUT, though every header line came within it.
    assert response.status == 0 and response.attempts == 2
    assert 1.1 < elapsed < 3.0
    assert server.requests == 2


def test_a_stalled_collector_fails_the_events_and_flush_says_so(raw_server: Any) -> None:
    server = raw_server(trickle)
    app = MoesifMiddleware(
        hello,
        {"APPLICATION_ID": APP_ID, "BASE_URI": server.url, "READ_TIMEOUT": 0.5, "MAX_RETRIES": 0},
    )
    try:
        for _ in range(3):
            call(app)
        started = time.monotonic()
        assert app.flush(timeout=10) is False
        assert time.monotonic() - started < 5
        stats = app.stats()
        assert stats["failed"] == 3 and stats["sent"] == 0
    finally:
        app.shutdown(timeout=1)


class BlamingCollector:
    """Answers 500 to any batch holding an event whose URI names ``poison``, 200 otherwise,
    and keeps the events it took."""

    def __init__(self, status: int = 500) -> None:
        self.status = status
        self.taken: List[Dict[str, Any]] = []
        self.batches = 0

    def __call__(self, conn: socket.socket, body: bytes) -> None:
        if not body:  # GET /v1/config: an empty app config
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            return
        self.batches += 1
        events = json.loads(gzip.decompress(body))
        if any("poison" in event["request"]["uri"] for event in events):
            conn.sendall(
                b"HTTP/1.1 %d Bad\r\nContent-Length: 0\r\n\r\n" % self.status  # noqa: UP031
            )
            return
        self.taken.extend(events)
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("status", [400, 422, 500])
def test_a_batch_refused_for_one_event_is_split_and_the_others_arrive(
    raw_server: Any, status: int
) -> None:
    blaming = BlamingCollector(status)
    server = raw_server(blaming)
    app = MoesifMiddleware(
        hello,
        {
            "APPLICATION_ID": APP_ID,
            "BASE_URI": server.url,
            "BATCH_SIZE": 41,
            "EVENT_BATCH_TIMEOUT": 5,
            "EVENT_WORKER_COUNT": 1,
            "MAX_RETRIES": 1,
            "RETRY_BACKOFF": 0.01,
        },
    )
    try:
        for index in range(41):
            call(app, "GET", "/poison" if index == 17 else f"/fine/{index}")
        assert app.flush(timeout=10) is False  # one event did not go
        stats = app.stats()
        assert stats["sent"] == 40 and stats["failed"] == 1
        uris = sorted(event["request"]["uri"] for event in blaming.taken)
        assert len(uris) == 40 and not any("poison" in uri for uri in uris)
        # Halving narrows on the bad event: about two requests per halving, not one per event.
        assert blaming.batches <= 2 + 2 * 6 + 1
    finally:
        app.shutdown(timeout=1)


def test_one_event_larger_than_a_batch_is_dropped_and_counted(collector: Any) -> None:
    big = "u" * 20_000

    def identify(_app: Any, environ: Dict[str, Any], *_: Any) -> Optional[str]:
        return big if environ.get("PATH_INFO") == "/big" else None

    app = MoesifMiddleware(
        hello,
        {
            "APPLICATION_ID": APP_ID,
            "BASE_URI": collector.url,
            "BATCH_MAX_BYTES": 10_000,
            "IDENTIFY_USER": identify,
            "EVENT_BATCH_TIMEOUT": 0.05,
        },
    )
    try:
        call(app, "GET", "/big")
        call(app, "GET", "/small")
        assert app.flush(timeout=10)
        events = collector.wait_for_events(1)
        assert [event["request"]["uri"].rsplit("/", 1)[1] for event in events] == ["small"]
        stats = app.stats()
        assert stats["dropped_too_large"] == 1 and stats["sent"] == 1
    finally:
        app.shutdown(timeout=1)


def test_the_byte_bound_counts_what_client_data_really_holds(collector: Any) -> None:
    collector.hang()
    app = MoesifMiddleware(
        hello,
        {
            "APPLICATION_ID": APP_ID,
            "BASE_URI": collector.url,
            "EVENT_QUEUE_MAX_BYTES": 1_000_000,
            "READ_TIMEOUT": 1,
            "MAX_RETRIES": 0,
        },
    )
    try:
        headers = {f"X-Filler-{n}": "v" * 2000 for n in range(100)}  # 200 KB of headers
        for _ in range(40):
            call(app, "GET", "/", headers=headers)
        stats = app.stats()
        # The 1 MB bound holds at most five of them, and each of the two senders has taken at
        # most a queue's worth (all forty if the bound counted only 80 bytes a header). A slow
        # run may outlast READ_TIMEOUT: a sender's failed call then leaves room for more.
        held = stats["captured"] - stats["failed"] - stats["sent"]
        assert held <= 15, stats
        assert stats["dropped_queue_full"] == 40 - stats["captured"], stats
    finally:
        collector.heal()
        app.shutdown(timeout=1)


def test_the_size_of_a_record_counts_every_string_it_holds() -> None:
    record = ExchangeRecord(path="/p" * 5000, query="q=" + "x" * 7000)
    record.user_id = "u" * 10_000_000
    record.session_token = "s" * 30_000
    record.metadata = {"deep": [{"k": "m" * 20_000}]}
    record.request_headers = [("X-A", "a" * 40_000)]
    assert record.approximate_size() > 10_000_000 + 10_000 + 7000 + 30_000 + 20_000 + 40_000
    nested: Any = "leaf"
    for _ in range(100):
        nested = [nested]
    record.metadata = nested
    assert record.approximate_size() > 1 << 39  # too deep to queue at all
