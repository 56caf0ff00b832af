"""The read API the inspector page uses (/_collector/page, /item, /counts) and the page's own
files, over real HTTP."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Dict, List

from servers import http_request, post_json

from moesif_integrations.collector import Collector
from moesif_integrations.collector.summary import event_line

APP_ID = "app-id-inspector"


def event(path: str, status: int, user: Any = None, **fields: Any) -> Dict[str, Any]:
    return {
        "request": {
            "time": "2026-01-01T00:00:00.000",
            "uri": f"http://h{path}?q=1",
            "verb": fields.pop("verb", "GET"),
            "headers": {"Content-Length": "12"},
        },
        "response": {
            "time": "2026-01-01T00:00:00.250",
            "status": status,
            "body": {"ok": True},
            "transfer_encoding": "json",
        },
        "user_id": user,
        **fields,
    }


def post(collector: Collector, path: str, items: Any, app_id: str = APP_ID) -> None:
    reply = post_json(collector.port, path, items, app_id)
    assert reply.status == 201, reply.body


def page(collector: Collector, query: str = "") -> Dict[str, Any]:
    reply = http_request(collector.port, "GET", f"/_collector/page?{query}")
    assert reply.status == 200, reply.body
    answer: Dict[str, Any] = reply.json()
    return answer


def ids(answer: Dict[str, Any]) -> List[int]:
    return [row["id"] for row in answer["items"]]


def test_page_lists_newest_first_with_summaries(collector: Collector) -> None:
    post(
        collector,
        "/v1/events/batch",
        [
            event("/items", 200, "u-1", company_id="c-1", weight=4, direction="Incoming"),
            event("/items/7", 404, "u-2", blocked_by="rule-9", direction="Incoming"),
            event("/remote", 503, None, verb="POST", direction="Outgoing"),
        ],
    )
    answer = page(collector)
    assert answer["total"] == 3 and answer["last_id"] == 3 and answer["kind"] == "events"
    assert ids(answer) == [3, 2, 1]
    first = answer["items"][2]
    assert first["method"] == "GET" and first["path"] == "/items" and first["status"] == 200
    assert first["user_id"] == "u-1" and first["company_id"] == "c-1" and first["weight"] == 4
    assert first["duration_ms"] == 250
    assert first["request_size"] == 12 and first["response_size"] == len('{"ok":true}')
    assert first["app_id"] == APP_ID and first["received_at"].endswith("Z")
    assert answer["items"][1]["blocked_by"] == "rule-9"


def test_page_filters_in_the_store(collector: Collector) -> None:
    post(
        collector,
        "/v1/events/batch",
        [
            event("/items", 200, "u-1", direction="Incoming"),
            event("/items/7", 404, "u-2", direction="Incoming"),
            event("/orders", 201, "u-1", direction="Incoming"),
            event("/remote/items", 503, None, direction="Outgoing"),
        ],
    )
    post(collector, "/v1/events", event("/items", 500, "u-3"), app_id="other-app")
    assert ids(page(collector, "status=2xx")) == [3, 1]
    assert ids(page(collector, "status=5")) == [5, 4]
    assert ids(page(collector, "user=u-1")) == [3, 1]
    assert ids(page(collector, "path=items")) == [5, 4, 2, 1]
    assert ids(page(collector, "path=ITEMS%2F")) == [2]
    assert ids(page(collector, "direction=outgoing")) == [4]
    assert ids(page(collector, "app=other-app")) == [5]
    assert ids(page(collector, "status=2xx&user=u-1&path=ord")) == [3]
    filtered = page(collector, "user=u-1")
    assert filtered["total"] == 2 and filtered["last_id"] == 5
    # LIKE wildcards in the text are taken literally.
    assert ids(page(collector, "path=%25")) == []
    assert ids(page(collector, "path=_")) == []


def test_page_windows_and_live_polling(collector: Collector) -> None:
    post(collector, "/v1/events/batch", [event(f"/n/{n}", 200) for n in range(1, 251)])
    newest = page(collector, "limit=100")
    assert ids(newest) == list(range(250, 150, -1)) and newest["total"] == 250
    older = page(collector, "limit=100&before=151")
    assert ids(older) == list(range(150, 50, -1))
    oldest = page(collector, "limit=100&before=51")
    assert ids(oldest) == list(range(50, 0, -1))
    assert ids(page(collector, "after=250")) == []
    post(collector, "/v1/events", event("/n/251", 200))
    assert ids(page(collector, "after=250")) == [251]


def test_item_returns_one_whole_item(collector: Collector) -> None:
    stored = event("/items", 200, "u-1")
    post(collector, "/v1/events", stored)
    reply = http_request(collector.port, "GET", "/_collector/item?kind=events&id=1")
    assert reply.status == 200
    answer = reply.json()
    assert answer["item"] == stored and answer["app_id"] == APP_ID and answer["id"] == 1
    assert http_request(collector.port, "GET", "/_collector/item?id=2").status == 404


def test_other_kinds_are_listed_with_their_key(collector: Collector) -> None:
    post(collector, "/v1/users/batch", [{"user_id": "u-1", "company_id": "c-1"}])
    post(collector, "/v1/companies", {"company_id": "c-1"})
    post(collector, "/v1/actions", {"action_name": "Clicked Buy", "user_id": "u-1"})
    users = page(collector, "kind=users")
    assert users["items"][0]["key"] == "u-1" and users["items"][0]["company_id"] == "c-1"
    assert page(collector, "kind=companies")["items"][0]["key"] == "c-1"
    assert page(collector, "kind=actions&q=buy")["items"][0]["key"] == "Clicked Buy"
    assert page(collector, "kind=actions&q=sell")["items"] == []
    # Event-only filters match nothing elsewhere rather than being ignored.
    assert page(collector, "kind=users&status=2xx")["items"] == []


def test_counts_per_application_id(collector: Collector) -> None:
    post(collector, "/v1/events/batch", [event("/a", 200), event("/b", 200)])
    post(collector, "/v1/events", event("/c", 200), app_id="second")
    post(collector, "/v1/users", {"user_id": "u"}, app_id="second")
    counts = http_request(collector.port, "GET", "/_collector/counts").json()
    assert counts["applications"][APP_ID]["events"] == 2
    assert counts["applications"]["second"] == {
        "events": 1,
        "users": 1,
        "companies": 0,
        "subscriptions": 0,
        "actions": 0,
    }
    assert counts["last_ids"]["events"] == 3
    assert counts["requests"]["/v1/events/batch"] == 1


def test_the_page_and_its_files_are_served(collector: Collector) -> None:
    index = http_request(collector.port, "GET", "/")
    assert index.status == 200
    assert index.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert b"/_inspector/inspector.js" in index.body
    script = http_request(collector.port, "GET", "/_inspector/inspector.js")
    assert script.status == 200 and script.headers["content-type"].startswith("text/javascript")
    assert b"/_collector/page" in script.body
    style = http_request(collector.port, "GET", "/_inspector/inspector.css")
    assert style.status == 200 and style.headers["content-type"].startswith("text/css")
    assert http_request(collector.port, "GET", "/_inspector/../server.py").status == 404
    assert http_request(collector.port, "GET", "/_inspector/nope.js").status == 404
    assert http_request(collector.port, "POST", "/", b"{}").status == 405
    assert http_request(collector.port, "GET", "/favicon.ico").status == 204


def test_a_database_from_before_the_filter_columns_is_upgraded(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL,"
            " app_id TEXT NOT NULL, json TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO events (received_at, app_id, json) VALUES (?, ?, ?)",
            ("2026-01-01T00:00:00.000Z", "old", json.dumps(event("/legacy", 404, "u-9"))),
        )
    conn.close()
    with Collector(db_path=str(db)) as upgraded:
        assert ids(page(upgraded, "status=4xx&user=u-9&path=legacy")) == [1]


def test_event_line_reads_like_the_demo_table() -> None:
    line = event_line("2026-01-01T10:11:12.345Z", "app-1", event("/items", 201, "u-1"))
    assert line.split()[:4] == ["10:11:12.345", "GET", "/items", "201"]
    assert "user=u-1" in line and "250ms" in line and "app=app-1" in line
