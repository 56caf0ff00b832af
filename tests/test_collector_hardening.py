"""The local collector refuses what a development tool bound to loopback must refuse: foreign
Host headers (DNS rebinding), control calls that are not JSON (cross-site forms), JSON nested
past what it can store and read back, out-of-range read limits; and it gives memory back when
told to forget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any, Dict, List, Optional

import pytest
from servers import ROOT_DIR, http_request, post_json, raw_exchange

from moesif_integrations.collector import Collector
from moesif_integrations.collector.__main__ import build_parser

APP_ID = "app-id-for-hardening"


def event(path: str = "/items", status: int = 200, **fields: Any) -> Dict[str, Any]:
    return {
        "request": {"time": "2026-01-01T00:00:00.000", "uri": f"http://h{path}", "verb": "GET"},
        "response": {"time": "2026-01-01T00:00:00.005", "status": status},
        **fields,
    }


def post_events(collector: Collector, events: List[Dict[str, Any]]) -> int:
    return post_json(collector.port, "/v1/events/batch", events, APP_ID).status


def raw(
    collector: Collector,
    method: str,
    path: str,
    host: Optional[str],
    body: bytes = b"",
    content_type: Optional[str] = None,
) -> int:
    """The status of one request sent byte for byte (``host`` None sends no Host header)."""
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    answer = raw_exchange(collector.port, "\r\n".join(lines).encode() + body)
    return int(answer.split(b" ", 2)[1])


# -- Host -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "[::2]:{port}"]
)
def test_a_foreign_host_header_is_refused(collector: Collector, host: str) -> None:
    post_events(collector, [event()])
    status = raw(collector, "GET", "/_collector/events", host.format(port=collector.port))
    assert status == 403
    assert raw(collector, "GET", "/", host.format(port=collector.port)) == 403
    # A rebound page cannot wipe the store either.
    reset = raw(collector, "POST", "/_collector/reset", host.format(port=collector.port), b"{}")
    assert reset == 403
    assert collector.event_count() == 1


def test_loopback_names_with_the_collectors_port_are_answered(collector: Collector) -> None:
    port = collector.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        assert raw(collector, "GET", "/_collector/counts", host) == 200, host
    # HTTP/1.0 clients may send no Host at all; no browser does.
    assert raw(collector, "GET", "/_collector/counts", None) == 200
    # The right name on another port is another site.
    assert raw(collector, "GET", "/_collector/counts", f"127.0.0.1:{port + 1}") == 403
    assert raw(collector, "GET", "/_collector/counts", "localhost") == 403
    assert raw(collector, "GET", "/_collector/counts", f"localhost:{port}x") == 403


def test_allowed_hosts_add_names() -> None:
    with Collector(allowed_hosts=["collector.test", "Proxy.Test:8443"]) as named:
        assert raw(named, "GET", "/_collector/counts", "collector.test") == 200
        assert raw(named, "GET", "/_collector/counts", "collector.test:9999") == 200
        assert raw(named, "GET", "/_collector/counts", "proxy.test:8443") == 200
        assert raw(named, "GET", "/_collector/counts", "proxy.test:8444") == 403
        assert raw(named, "GET", "/_collector/counts", "other.test") == 403
    assert build_parser().parse_args(["--allow-host", "a", "--allow-host", "b"]).allowed_hosts == [
        "a",
        "b",
    ]
    with pytest.raises(TypeError):
        Collector(allowed_hosts="collector.test")


def test_the_collector_api_checks_the_host_too(collector: Collector) -> None:
    body = json.dumps([event()]).encode()
    lines = (
        "POST /v1/events/batch HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json"
        f"\r\nX-Moesif-Application-Id: {APP_ID}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    answer = raw_exchange(collector.port, lines.encode() + body)
    assert answer.startswith(b"HTTP/1.1 403")
    assert collector.event_count() == 0


# -- control calls ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_control_calls_need_json(collector: Collector, content_type: Optional[str]) -> None:
    post_events(collector, [event()])
    host = f"127.0.0.1:{collector.port}"
    assert raw(collector, "POST", "/_collector/reset", host, b"{}", content_type) == 415
    assert collector.event_count() == 1
    fault = json.dumps({"mode": "fail", "status": 503}).encode()
    assert raw(collector, "POST", "/_collector/fault", host, fault, content_type) == 415
    assert collector.fault is None
    assert raw(collector, "POST", "/_collector/config", host, b"{}", content_type) == 415
    json_type = "application/json; charset=utf-8"
    assert raw(collector, "POST", "/_collector/reset", host, b"{}", json_type) == 200
    assert collector.event_count() == 0


# -- what is refused with a 400 -------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [600, 100_000])
def test_deeply_nested_json_is_a_400(collector: Collector, depth: int) -> None:
    batch = '[{"request": {"time": "2026-01-01T00:00:00.000", "uri": "http://h/", "verb": "GET",'
    batch += f' "body": {nested(depth)}}}}}]'
    headers = {"Content-Type": "application/json", "X-Moesif-Application-Id": APP_ID}
    reply = http_request(collector.port, "POST", "/v1/events/batch", batch.encode(), headers)
    assert reply.status == 400, reply.body
    assert b"nested" in reply.body
    deep_config = http_request(
        collector.port, "POST", "/_collector/config", nested(depth).encode(), headers
    )
    assert deep_config.status == 400
    # Still serving, and what is stored still reads back.
    assert post_events(collector, [event()]) == 201
    assert http_request(collector.port, "GET", "/_collector/events").status == 200


def test_nesting_within_the_bound_is_stored_and_reads_back(collector: Collector) -> None:
    body: Any = "leaf"
    for _ in range(400):
        body = {"a": body}
    assert post_events(collector, [event(body=body)]) == 201
    reply = http_request(collector.port, "GET", "/_collector/events")
    assert reply.status == 200
    assert reply.json()["events"][0]["event"]["body"] == body


@pytest.mark.parametrize(
    "query",
    [
        "/_collector/events?limit=99999999999999999999",
        "/_collector/events?limit=100000000",
        "/_collector/events?since=99999999999999999999",
        "/_collector/events?limit=1e9",
        "/_collector/page?limit=99999999999999999999",
        "/_collector/page?before=99999999999999999999",
        "/_collector/page?kind=nope",
        "/_collector/page?status=7xx",
        "/_collector/item?id=99999999999999999999",
        "/_collector/item",
    ],
)
def test_out_of_range_read_parameters_are_a_400(collector: Collector, query: str) -> None:
    reply = http_request(collector.port, "GET", query)
    assert reply.status == 400, (query, reply.body)


# -- memory ---------------------------------------------------------------------------------

_MEMORY_SCRIPT = textwrap.dedent(
    """
    import http.client, json, sys
    import psutil
    from moesif_integrations.collector import Collector

    def rss():
        return psutil.Process().memory_info().rss

    event = {
        "request": {"time": "2026-01-01T00:00:00.000", "uri": "http://h/items", "verb": "POST",
                    "headers": {"X-Padding": "p" * 400}, "body": {"text": "b" * 600}},
        "response": {"time": "2026-01-01T00:00:00.005", "status": 201},
    }
    batch = json.dumps([event] * 500).encode()
    with Collector() as collector:
        conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=30)
        def call(method, path, body):
            conn.request(method, path, body, {"Content-Type": "application/json",
                                             "X-Moesif-Application-Id": "app"})
            answer = conn.getresponse()
            answer.read()
            assert answer.status < 300, answer.status
        call("POST", "/_collector/reset", b"{}")
        before = rss()
        for cycle in range(3):
            for _ in range(40):
                call("POST", "/v1/events/batch", batch)
            stored = rss()
            call("POST", "/_collector/reset", b"{}")
        after = rss()
        print(json.dumps({"before": before, "stored": stored, "after": after}))
    """
)


def test_reset_gives_the_memory_of_stored_events_back() -> None:
    """Three cycles of 20,000 events (about 30 MB) stored and reset: the collector's resident
    memory after the last reset is back near where it started."""
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT_DIR,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    grew = figures["stored"] - figures["before"]
    kept = figures["after"] - figures["before"]
    assert grew > 20 * 2**20, figures  # the store really held tens of megabytes
    assert kept < grew / 4, figures
