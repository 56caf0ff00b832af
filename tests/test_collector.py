"""The local collector, exercised over real HTTP on loopback with only the standard library."""

from __future__ import annotations

import gzip
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import pytest

from moesif_integrations.collector import Collector, Fault
from moesif_integrations.collector.__main__ import main

APP_ID = "app-id-for-tests"


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def json(self) -> Any:
        return json.loads(self.body)


def connect(collector: Collector, timeout: float = 5.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", collector.port, timeout=timeout)


def request(
    target: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    app_id: Optional[str] = APP_ID,
    gzipped: bool = False,
    raw: Optional[bytes] = None,
    headers: Optional[Mapping[str, str]] = None,
    timeout: float = 5.0,
) -> Answer:
    """One request; ``target`` is a Collector (new connection) or an open HTTPConnection."""
    sent: Dict[str, str] = {"Content-Type": "application/json; charset=utf-8"}
    if app_id is not None:
        sent["X-Moesif-Application-Id"] = app_id
    data = raw
    if data is None and body is not None:
        data = json.dumps(body).encode()
    if gzipped and data is not None:
        data = gzip.compress(data)
        sent["Content-Encoding"] = "gzip"
    sent.update(headers or {})
    if not isinstance(target, Collector):
        target.request(method, path, body=data, headers=sent)
        return Answer(target.getresponse())
    conn = connect(target, timeout)
    try:
        conn.request(method, path, body=data, headers=sent)
        return Answer(conn.getresponse())
    finally:
        conn.close()


def make_event(n: int = 0) -> Dict[str, Any]:
    return {
        "request": {
            "time": "2026-11-25T20:05:15.585",
            "uri": f"http://api.example.com/items/{n}",
            "verb": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": {"n": n},
            "transfer_encoding": "json",
        },
        "response": {"time": "2026-11-25T20:05:15.586", "status": 201, "headers": {}},
        "direction": "Incoming",
        "weight": 1,
        "transaction_id": f"00000000-0000-4000-8000-{n:012d}",
    }


# -- the data endpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzip", "plain"])
def test_event_batches_are_stored_in_order(
    collector: Collector, gzipped: bool, json_backend: str
) -> None:
    conn = connect(collector)
    for first in (0, 3):
        batch = [make_event(n) for n in range(first, first + 3)]
        answer = request(conn, "POST", "/v1/events/batch", batch, gzipped=gzipped)
        assert answer.status == 201
        assert answer.headers["X-Moesif-Config-ETag"] == collector.etag
        assert answer.headers["Content-Length"] == str(len(answer.body))
    conn.close()
    assert [event["request"]["body"]["n"] for event in collector.events()] == list(range(6))
    assert collector.event_count() == 6
    assert collector.request_count("/v1/events/batch") == 2
    assert {item.app_id for item in collector.stored("events")} == {APP_ID}


def test_last_request_headers_are_kept_per_endpoint(collector: Collector) -> None:
    assert collector.last_request_headers() == {}
    request(collector, "POST", "/v1/events/batch", [make_event()], gzipped=True)
    request(collector, "POST", "/v1/users", {"user_id": "u"}, headers={"User-Agent": "u-agent"})
    batch_headers = collector.last_request_headers("/v1/events/batch")
    assert batch_headers["content-encoding"] == "gzip"
    assert batch_headers["x-moesif-application-id"] == APP_ID
    assert collector.last_request_headers("/v1/users")["user-agent"] == "u-agent"
    collector.reset()
    assert collector.last_request_headers("/v1/users") == {}


def test_connections_are_kept_alive(collector: Collector) -> None:
    conn = connect(collector)
    request(conn, "POST", "/v1/events/batch", [make_event(1)], gzipped=True)
    first_socket = conn.sock
    for _ in range(3):
        assert request(conn, "POST", "/v1/events/batch", [make_event(2)]).status == 201
    assert conn.sock is first_socket
    conn.close()


def test_single_event(collector: Collector) -> None:
    assert request(collector, "POST", "/v1/events", make_event(7), gzipped=True).status == 201
    assert collector.events() == [make_event(7)]
    assert collector.request_count("/v1/events") == 1
    assert collector.request_count("/v1/events/batch") == 0


def test_what_the_standard_library_reads_is_stored_as_it_came(
    collector: Collector, json_backend: str
) -> None:
    # NaN and integers past 64 bits are not what a client should send, but the collector has
    # always taken them: they are stored and read back unchanged, beside ordinary events.
    text = (
        b'[{"request": {"time": "2026-11-25T20:05:15.585", "uri": "http://a/", "verb": "GET"},'
        b' "metadata": {"ratio": NaN, "big": 123456789012345678901234567890, "name": "\\u00e9"}}]'
    )
    assert request(collector, "POST", "/v1/events/batch", raw=text).status == 201
    assert request(collector, "POST", "/v1/events/batch", [make_event(1)]).status == 201
    stored, ordinary = collector.events()
    assert math.isnan(stored["metadata"]["ratio"])
    assert stored["metadata"]["big"] == 123456789012345678901234567890
    assert stored["metadata"]["name"] == "\u00e9"
    assert ordinary == make_event(1)


def test_base_path_prefix_is_accepted(collector: Collector) -> None:
    answer = request(collector, "POST", "/collector/v1/events/batch?x=1", [make_event(1)])
    assert answer.status == 201
    assert collector.event_count() == 1
    assert collector.request_count("/v1/events/batch") == 1
    assert request(collector, "GET", "/collector/v1/config").status == 200


ENTITIES = [
    ("users", {"user_id": "u1", "company_id": "c1", "metadata": {"plan": "gold"}}),
    ("companies", {"company_id": "c1", "company_domain": "example.com"}),
    ("subscriptions", {"subscription_id": "s1", "company_id": "c1", "status": "active"}),
    ("actions", {"action_name": "Clicked", "request": {"uri": "http://x/"}, "user_id": "u1"}),
]


@pytest.mark.parametrize(("kind", "item"), ENTITIES, ids=[kind for kind, _ in ENTITIES])
def test_entities_single_and_batch(collector: Collector, kind: str, item: Dict[str, Any]) -> None:
    assert request(collector, "POST", f"/v1/{kind}", item, gzipped=True).status == 201
    second = dict(item, metadata={"n": 2})
    assert request(collector, "POST", f"/v1/{kind}/batch", [second, item]).status == 201
    assert getattr(collector, kind)() == [item, second, item]
    assert collector.count(kind) == 3
    assert collector.request_count(f"/v1/{kind}") == 1
    assert collector.request_count(f"/v1/{kind}/batch") == 1
    assert collector.event_count() == 0


@pytest.mark.parametrize(
    ("kind", "item", "missing"),
    [
        ("events", {"request": {"time": "t", "uri": "u"}}, "request.verb"),
        ("events", {"response": {"status": 200}}, "request"),
        ("users", {"company_id": "c1"}, "user_id"),
        ("subscriptions", {"subscription_id": "s1"}, "company_id"),
        ("actions", {"user_id": "u1"}, "action_name"),
    ],
)
def test_items_without_required_fields_are_refused(
    collector: Collector, kind: str, item: Dict[str, Any], missing: str
) -> None:
    answer = request(collector, "POST", f"/v1/{kind}/batch", [item])
    assert answer.status == 400
    assert missing in answer.json()["error"]
    assert collector.count(kind) == 0


def test_validation_can_be_turned_off() -> None:
    with Collector(validate=False) as lenient:
        assert request(lenient, "POST", "/v1/events/batch", [{"anything": 1}]).status == 201
        assert lenient.events() == [{"anything": 1}]
    lenient.close()


# -- authentication and bad input -----------------------------------------------------------


def test_application_id_is_required() -> None:
    with Collector(application_ids={"good-id"}) as strict:
        missing = request(strict, "POST", "/v1/events/batch", [make_event()], app_id=None)
        wrong = request(strict, "POST", "/v1/events/batch", [make_event()], app_id="bad-id")
        config = request(strict, "GET", "/v1/config", app_id="bad-id")
        good = request(strict, "POST", "/v1/events/batch", [make_event()], app_id="good-id")
        assert (missing.status, wrong.status, config.status, good.status) == (401, 401, 401, 201)
        assert "error" in missing.json() and "error" in wrong.json()
        assert strict.event_count() == 1
        assert strict.request_count() == 3  # refused requests are counted too
    strict.close()


def test_any_non_empty_id_is_accepted_by_default(collector: Collector) -> None:
    assert request(collector, "POST", "/v1/events", make_event(), app_id="whatever").status == 201
    assert request(collector, "POST", "/v1/events", make_event(), app_id="  ").status == 401


@pytest.mark.parametrize(
    ("raw", "headers", "message"),
    [
        (b"{not json", {}, "JSON"),
        (b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}, "gzip"),
        (gzip.compress(b'[{"request": 1')[:-6], {"Content-Encoding": "gzip"}, "gzip"),
        (b'{"request": {}}', {}, "array"),
        (b"[1, 2]", {}, "object"),
        (b"[]", {"Content-Encoding": "br"}, "Content-Encoding"),
    ],
    ids=["bad-json", "bad-gzip", "truncated-gzip", "object-for-batch", "numbers", "brotli"],
)
def test_bad_bodies_get_400(
    collector: Collector, raw: bytes, headers: Dict[str, str], message: str
) -> None:
    conn = connect(collector)
    answer = request(conn, "POST", "/v1/events/batch", raw=raw, headers=headers)
    assert answer.status == 400
    assert message in answer.json()["error"]
    # The server is fine, and so is the connection.
    assert request(conn, "POST", "/v1/events/batch", [make_event()]).status == 201
    conn.close()
    assert collector.event_count() == 1


def test_an_array_for_a_single_event_gets_400(collector: Collector) -> None:
    assert request(collector, "POST", "/v1/events", [make_event()]).status == 400


def test_empty_batch_is_accepted(collector: Collector) -> None:
    assert request(collector, "POST", "/v1/events/batch", []).status == 201
    assert collector.event_count() == 0


def test_chunked_body(collector: Collector) -> None:
    data = gzip.compress(json.dumps([make_event(n) for n in range(5)]).encode())
    conn = connect(collector)
    conn.request(
        "POST",
        "/v1/events/batch",
        body=iter([data[:10], data[10:]]),
        headers={"X-Moesif-Application-Id": APP_ID, "Content-Encoding": "gzip"},
        encode_chunked=True,
    )
    assert conn.getresponse().status == 201
    conn.close()
    assert collector.event_count() == 5


def test_body_over_the_limit_gets_413() -> None:
    with Collector(max_body_bytes=1000) as small:
        big = [make_event(n) for n in range(20)]
        conn = connect(small)
        assert request(conn, "POST", "/v1/events/batch", big).status == 413
        # The body was read, so the connection stays usable.
        assert request(conn, "POST", "/v1/events/batch", [make_event()]).status == 201
        conn.close()
        huge = b"[" + b" " * 5000 + b"]"
        assert request(small, "POST", "/v1/events/batch", raw=huge).status == 413
        # A small gzip body that inflates past the limit is refused as well.
        assert request(small, "POST", "/v1/events/batch", big, gzipped=True).status == 400
        assert small.event_count() == 1
    small.close()


def test_unknown_path_and_wrong_method(collector: Collector) -> None:
    assert request(collector, "POST", "/v2/events", [make_event()]).status == 404
    wrong = request(collector, "GET", "/v1/events/batch")
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "POST"
    assert request(collector, "POST", "/v1/config", {}).status == 405


# -- config and rules -----------------------------------------------------------------------

DEFAULT_CONFIG = {
    "sample_rate": 100,
    "user_sample_rate": {},
    "company_sample_rate": {},
    "regex_config": [],
    "user_rules": {},
    "company_rules": {},
}
RULE = {"_id": "r1", "type": "regex", "block": True, "response": {"status": 402}}


def test_config_and_rules_with_etag(collector: Collector) -> None:
    config = request(collector, "GET", "/v1/config")
    rules = request(collector, "GET", "/v1/rules")
    assert (config.status, config.json()) == (200, DEFAULT_CONFIG)
    assert (rules.status, rules.json()) == (200, [])
    first_etag = config.headers["X-Moesif-Config-ETag"]
    assert first_etag == collector.etag == rules.headers["X-Moesif-Config-ETag"]

    collector.set_config(dict(DEFAULT_CONFIG, sample_rate=50))
    second_etag = collector.etag
    assert second_etag != first_etag
    answer = request(collector, "GET", "/v1/config")
    assert answer.json()["sample_rate"] == 50
    assert answer.headers["X-Moesif-Config-ETag"] == second_etag
    posted = request(collector, "POST", "/v1/events/batch", [make_event()])
    assert posted.headers["X-Moesif-Config-ETag"] == second_etag

    collector.set_rules([RULE])
    assert collector.etag not in (first_etag, second_etag)
    assert request(collector, "GET", "/v1/rules").json() == [RULE]
    assert collector.rules == [RULE]
    assert collector.request_count("/v1/config") == 2


def test_config_and_rules_from_values() -> None:
    with Collector(config={"sample_rate": 10}, rules=[RULE]) as configured:
        assert request(configured, "GET", "/v1/config").json() == {"sample_rate": 10}
        assert request(configured, "GET", "/v1/rules").json() == [RULE]
    configured.close()


def test_bad_config_values_are_refused(collector: Collector) -> None:
    with pytest.raises(TypeError):
        collector.set_config([])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        collector.set_rules({"a": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Collector(config={}, config_path="config.json")


def write_json(path: Path, value: Any, mtime: float) -> None:
    path.write_text(json.dumps(value))
    # Set the time explicitly: two writes within one clock tick would otherwise look the same.
    os.utime(path, (mtime, mtime))


def test_config_and_rules_files_are_reloaded_on_change(tmp_path: Path) -> None:
    config_file, rules_file = tmp_path / "config.json", tmp_path / "rules.json"
    write_json(config_file, {"sample_rate": 100}, 1_000_000)
    write_json(rules_file, [], 1_000_000)
    with Collector(config_path=str(config_file), rules_path=str(rules_file)) as watching:
        first = request(watching, "GET", "/v1/config")
        assert first.json() == {"sample_rate": 100}

        write_json(config_file, {"sample_rate": 25}, 1_000_100)
        second = request(watching, "GET", "/v1/config")
        assert second.json() == {"sample_rate": 25}
        assert second.headers["X-Moesif-Config-ETag"] != first.headers["X-Moesif-Config-ETag"]

        write_json(rules_file, [RULE], 1_000_100)
        assert request(watching, "GET", "/v1/rules").json() == [RULE]

        # A broken edit keeps the last good document.
        etag = watching.etag
        config_file.write_text("{broken")
        os.utime(config_file, (1_000_200, 1_000_200))
        assert request(watching, "GET", "/v1/config").json() == {"sample_rate": 25}
        assert watching.etag == etag
    watching.close()


def test_a_missing_or_invalid_config_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Collector(config_path=str(tmp_path / "absent.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(TypeError, match="object"):
        Collector(config_path=str(bad))


# -- faults ---------------------------------------------------------------------------------


def test_fail_with_retry_after_and_count(collector: Collector) -> None:
    collector.fail(503, retry_after=2, count=2)
    conn = connect(collector)
    answers = [request(conn, "POST", "/v1/events/batch", [make_event(n)]) for n in range(3)]
    conn.close()
    assert [answer.status for answer in answers] == [503, 503, 201]
    assert [answer.headers["Retry-After"] for answer in answers[:2]] == ["2", "2"]
    assert answers[2].headers["Retry-After"] is None
    assert [event["request"]["body"]["n"] for event in collector.events()] == [2]
    assert collector.request_count() == 3
    assert collector.fault is None


def test_fail_until_healed_spares_config_unless_all(collector: Collector) -> None:
    collector.fail(500)
    for _ in range(3):
        assert request(collector, "POST", "/v1/users", {"user_id": "u"}).status == 500
    assert request(collector, "GET", "/v1/config").status == 200
    collector.fail(429, all=True)
    assert request(collector, "GET", "/v1/config").status == 429
    assert request(collector, "GET", "/v1/rules").status == 429
    collector.heal()
    assert request(collector, "POST", "/v1/users", {"user_id": "u"}).status == 201
    assert collector.users() == [{"user_id": "u"}]


def test_delay_then_store(collector: Collector) -> None:
    collector.delay(0.3)
    started = time.monotonic()
    assert request(collector, "POST", "/v1/events/batch", [make_event()]).status == 201
    assert time.monotonic() - started >= 0.3
    assert collector.event_count() == 1


def test_hang_until_healed(collector: Collector) -> None:
    collector.hang()
    conn = connect(collector, timeout=0.3)
    with pytest.raises(socket.timeout):
        request(conn, "POST", "/v1/events/batch", [make_event()])
    assert collector.request_count() == 1
    assert collector.event_count() == 0
    collector.heal()
    # The hung request is closed unanswered; it is not stored later.
    assert conn.sock is not None
    conn.sock.settimeout(2)
    assert conn.sock.recv(100) == b""
    conn.close()
    assert request(collector, "POST", "/v1/events/batch", [make_event()]).status == 201
    assert collector.event_count() == 1


def test_hang_with_count_only_holds_that_many(collector: Collector) -> None:
    collector.hang(count=1)
    with pytest.raises(socket.timeout):
        request(collector, "POST", "/v1/events/batch", [make_event()], timeout=0.3)
    assert request(collector, "POST", "/v1/events/batch", [make_event()]).status == 201


def test_drop_closes_without_answer(collector: Collector) -> None:
    collector.drop(count=1)
    with pytest.raises(http.client.RemoteDisconnected):
        request(collector, "POST", "/v1/events/batch", [make_event()])
    assert request(collector, "POST", "/v1/events/batch", [make_event()]).status == 201
    assert collector.event_count() == 1
    assert collector.request_count() == 2


def test_fault_values_are_checked() -> None:
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault("fail", status=99)
    with pytest.raises(ValueError):
        Fault("drop", count=0)
    with pytest.raises(ValueError):
        Fault("delay", seconds=-1)


def test_stop_returns_quickly_with_hung_and_delayed_requests() -> None:
    running = Collector().start()
    running.hang()
    errors: List[BaseException] = []

    def hung_client() -> None:
        try:
            request(running, "POST", "/v1/events/batch", [make_event()], timeout=30)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(exc)

    clients = [threading.Thread(target=hung_client) for _ in range(3)]
    for client in clients:
        client.start()
    running.wait_for_requests(3)
    idle = connect(running)  # an idle keep-alive connection too
    request(idle, "GET", "/_collector/counts")
    started = time.monotonic()
    running.stop()
    assert time.monotonic() - started < 1.5
    for client in clients:
        client.join(5)
    assert len(errors) == 3  # each hung client saw its connection closed
    with pytest.raises(OSError):
        request(running, "GET", "/_collector/counts", timeout=1)
    idle.close()
    running.close()


# -- the read API over HTTP -----------------------------------------------------------------


def test_read_api_pages_events(collector: Collector) -> None:
    request(collector, "POST", "/v1/events/batch", [make_event(n) for n in range(5)])
    first = request(collector, "GET", "/_collector/events?limit=3", app_id=None).json()
    assert [row["event"]["request"]["body"]["n"] for row in first["events"]] == [0, 1, 2]
    assert first["last_id"] == first["events"][-1]["id"]
    assert first["events"][0]["app_id"] == APP_ID
    assert first["events"][0]["received_at"].endswith("Z")
    rest = request(collector, "GET", f"/_collector/events?since={first['last_id']}").json()
    assert [row["event"]["request"]["body"]["n"] for row in rest["events"]] == [3, 4]
    empty = request(collector, "GET", f"/_collector/events?since={rest['last_id']}").json()
    assert empty == {"events": [], "last_id": rest["last_id"]}
    assert request(collector, "GET", "/_collector/events?limit=0").status == 400
    assert request(collector, "GET", "/_collector/events?since=x").status == 400


def test_read_api_counts_entities_and_reset(collector: Collector) -> None:
    request(collector, "POST", "/v1/events/batch", [make_event(1), make_event(2)])
    request(collector, "POST", "/v1/users", {"user_id": "u1"})
    request(collector, "POST", "/v1/companies/batch", [{"company_id": "c1"}])
    counts = request(collector, "GET", "/_collector/counts", app_id=None).json()
    assert counts["events"] == 2 and counts["users"] == 1 and counts["companies"] == 1
    assert counts["subscriptions"] == 0 and counts["actions"] == 0
    assert counts["requests"]["/v1/events/batch"] == 1
    assert counts["requests"]["/v1/companies/batch"] == 1
    users = request(collector, "GET", "/_collector/users").json()
    assert [row["user"] for row in users["users"]] == [{"user_id": "u1"}]
    companies = request(collector, "GET", "/_collector/companies").json()
    assert [row["company"] for row in companies["companies"]] == [{"company_id": "c1"}]
    last_id = request(collector, "GET", "/_collector/events").json()["last_id"]

    assert request(collector, "POST", "/_collector/reset").status == 200
    counts = request(collector, "GET", "/_collector/counts").json()
    assert counts["events"] == counts["users"] == 0
    assert set(counts["requests"].values()) == {0}
    request(collector, "POST", "/v1/events/batch", [make_event(3)])
    # Ids keep increasing across a reset, so a poller never re-reads or misses a row.
    assert collector.stored("events")[0].id > last_id


def test_read_api_sets_faults_config_and_rules(collector: Collector) -> None:
    fault = {"mode": "fail", "status": 502, "retry_after": 1, "count": 1}
    assert request(collector, "POST", "/_collector/fault", fault).status == 200
    failed = request(collector, "POST", "/v1/events/batch", [make_event()])
    assert (failed.status, failed.headers["Retry-After"]) == (502, "1")
    assert request(collector, "POST", "/v1/events/batch", [make_event()]).status == 201

    assert request(collector, "POST", "/_collector/fault", {"mode": "drop"}).status == 200
    with pytest.raises(http.client.RemoteDisconnected):
        request(collector, "POST", "/v1/events/batch", [make_event()])
    assert request(collector, "POST", "/_collector/fault", {"mode": "heal"}).status == 200
    assert collector.fault is None
    assert request(collector, "POST", "/_collector/fault", {"mode": "nap"}).status == 400
    assert request(collector, "POST", "/_collector/fault", {"mode": "fail", "x": 1}).status == 400

    answer = request(collector, "POST", "/_collector/config", {"sample_rate": 5}, gzipped=True)
    assert answer.json() == {"etag": collector.etag}
    assert request(collector, "GET", "/v1/config").json() == {"sample_rate": 5}
    assert request(collector, "POST", "/_collector/rules", [RULE]).status == 200
    assert request(collector, "GET", "/v1/rules").json() == [RULE]
    assert request(collector, "POST", "/_collector/rules", {"no": "list"}).status == 400
    assert request(collector, "GET", "/_collector/reset").status == 405
    assert request(collector, "GET", "/_collector/nothing").status == 404


# -- in-process helpers, storage ------------------------------------------------------------


def test_wait_for_events_times_out_with_the_count(collector: Collector) -> None:
    request(collector, "POST", "/v1/events", make_event())
    with pytest.raises(TimeoutError, match="1 arrived"):
        collector.wait_for_events(2, timeout=0.1)
    with pytest.raises(ValueError):
        collector.request_count("/v1/nothing")


def test_file_storage_survives_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "events.sqlite")
    with Collector(db_path=db) as first:
        request(first, "POST", "/v1/events/batch", [make_event(1), make_event(2)])
    first.close()
    with Collector(db_path=db) as second:
        request(second, "POST", "/v1/events/batch", [make_event(3)])
        assert [event["request"]["body"]["n"] for event in second.events()] == [1, 2, 3]
        assert [item.id for item in second.stored("events")] == [1, 2, 3]
    second.close()


def test_throughput_of_100_batches_of_100(collector: Collector) -> None:
    batch = gzip.compress(json.dumps([make_event(n) for n in range(100)]).encode(), 1)
    failures: List[int] = []

    def client(batches: int) -> None:
        conn = connect(collector)
        for _ in range(batches):
            answer = request(
                conn, "POST", "/v1/events/batch", raw=batch, headers={"Content-Encoding": "gzip"}
            )
            if answer.status != 201:
                failures.append(answer.status)
        conn.close()

    clients = [threading.Thread(target=client, args=(25,)) for _ in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
    assert failures == []
    assert collector.event_count() == 10_000
    assert collector.request_count() == 100


# -- the command line -----------------------------------------------------------------------


def start_cli(*args: str) -> Tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "moesif_integrations.collector", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    prefix = "Moesif local collector listening on "
    assert line.startswith(prefix), (line, process.stderr.read() if process.stderr else "")
    url, inspector = line[len(prefix) :].strip().split(" ", 1)
    assert inspector == f"(inspector: {url}/)"
    return process, url


def cli_request(url: str, method: str, path: str, body: Any = None, **kwargs: Any) -> Answer:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        return request(conn, method, path, body, **kwargs)
    finally:
        conn.close()


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "cli.sqlite"
    process, url = start_cli("--db", str(db), "--app-id", "id-1", "id-2")
    try:
        posted = cli_request(url, "POST", "/v1/events/batch", [make_event()], app_id="id-2")
        assert posted.status == 201
        assert cli_request(url, "POST", "/v1/events", make_event(), app_id="id-3").status == 401
        counts = cli_request(url, "GET", "/_collector/counts").json()
        assert counts["events"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert stdout == "" and stderr == ""  # one line only, and a quiet access log
    with Collector(db_path=str(db)) as reopened:
        assert reopened.event_count() == 1
    reopened.close()


def test_cli_fail_option_and_sigint() -> None:
    process, url = start_cli("--fail", "503", "--retry-after", "3")
    try:
        answer = cli_request(url, "POST", "/v1/events/batch", [make_event()])
        assert (answer.status, answer.headers["Retry-After"]) == (503, "3")
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_cli_verbose_logs_requests_on_stderr() -> None:
    process, url = start_cli("--verbose")
    try:
        assert cli_request(url, "GET", "/v1/config").status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert "GET /v1/config" in stderr


def test_main_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with Collector() as busy:
        assert main(["--port", str(busy.port)]) == 1
    busy.close()
    assert "moesif-collector:" in capsys.readouterr().err
