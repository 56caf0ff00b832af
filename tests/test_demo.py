"""The demo (``python -m moesif_integrations demo``) and the generic WSGI example, end to end."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest
from servers import ROOT_DIR, free_port, serve, wait_for_port

from moesif_integrations import demo
from moesif_integrations.collector import Collector
from moesif_integrations.demo import CREDENTIALS

EXAMPLE_DIR = os.path.join(ROOT_DIR, "examples", "wsgi")
EXAMPLE_SCRIPT = os.path.join(EXAMPLE_DIR, "app.py")

# request kind -> (method, path, status) the demo's table must show.
DEMO_ROWS = {
    "JSON GET": ("GET", "/items/42", "200"),
    "JSON POST": ("POST", "/items", "201"),
    "form post": ("POST", "/contact", "200"),
    "binary upload": ("PUT", "/uploads/logo.png", "201"),
    "streamed response": ("GET", "/ticks", "200"),
    "large download": ("GET", "/reports/orders.csv", "200"),
    "app exception": ("GET", "/boom", "500"),
    "unknown route": ("GET", "/nope", "404"),
    "JWT user": ("GET", "/me", "200"),
    "cookie + API key": ("GET", "/account", "200"),
    "outgoing call": ("GET", "/prices/42", "200"),
    "blocked by a rule": ("GET", "/admin/users", "403"),
}
COLUMNS = ["request", "method", "path", "status", "user", "req body", "resp body", "ms", "txn"]
PAIR_COLUMNS = ["direction", "method", "url", "status", "ms", "txn", "incoming txn"]
# Every request but the sampled-out one is an event, and the app's call to the rates API is one.
EVENT_COUNT = len(DEMO_ROWS) + 1


def run_module(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moesif_integrations", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT_DIR,
    )


def table_rows(output: str) -> Dict[str, Dict[str, str]]:
    """The demo's table as {request kind: {column: cell}}; cells are 2+ spaces apart."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["request", "method"])
    assert re.split(r"\s{2,}", lines[start].strip()) == COLUMNS
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(COLUMNS), line
        rows[cells[0]] = dict(zip(COLUMNS, cells))
    return rows


def pair_rows(output: str) -> List[Dict[str, str]]:
    """The table of the outgoing call and the incoming request that made it."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["direction", "method"])
    assert re.split(r"\s{2,}", lines[start].strip()) == PAIR_COLUMNS
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append(dict(zip(PAIR_COLUMNS, re.split(r"\s{2,}", line.strip()))))
    return rows


def assert_outgoing_pair(events: List[Dict[str, Any]], incoming_path: str) -> Dict[str, Any]:
    """The one Outgoing event: the app's call to the stand-in rates API, joined by metadata to
    the incoming event of ``incoming_path``. Returns it."""
    (outgoing,) = [e for e in events if e.get("direction") == "Outgoing"]
    incoming = next(e for e in events if urlsplit(e["request"]["uri"]).path == incoming_path)
    assert incoming.get("direction") != "Outgoing"
    assert re.fullmatch(
        r"http://127\.0\.0\.1:\d+/v1/rates\?symbols=EUR", outgoing["request"]["uri"]
    )
    assert outgoing["request"]["verb"] == "GET" and outgoing["response"]["status"] == 200
    assert outgoing["response"]["body"] == {"base": "USD", "rates": {"EUR": 0.92}}
    assert outgoing["metadata"]["incoming_transaction_id"] == incoming["transaction_id"]
    assert outgoing["transaction_id"] != incoming["transaction_id"]
    return outgoing


def stored_events(db_path: Path) -> List[Dict[str, Any]]:
    with sqlite3.connect(str(db_path)) as connection:
        rows = connection.execute("SELECT json FROM events ORDER BY id").fetchall()
    return [json.loads(text) for (text,) in rows]


# ------------------------------------------------------------------------------- the demo


def test_demo_shows_every_request_kind_with_its_status(tmp_path: Path) -> None:
    db_path = tmp_path / "demo.sqlite"
    started = time.monotonic()
    result = run_module("demo", "--db", str(db_path))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 30
    assert "Traceback" not in result.stderr

    rows = table_rows(result.stdout)
    assert set(rows) == set(DEMO_ROWS)
    for kind, (method, path, status) in DEMO_ROWS.items():
        assert (rows[kind]["method"], rows[kind]["path"], rows[kind]["status"]) == (
            method,
            path,
            status,
        ), kind
    assert rows["JSON POST"]["req body"] == "json"
    assert rows["JSON GET"]["resp body"] == "json"
    assert rows["binary upload"]["req body"] == "base64"
    assert rows["large download"]["resp body"] == "truncated"
    # The user from IDENTIFY_USER, and the one from the JWT's "sub" claim.
    assert rows["cookie + API key"]["user"] == "user-api-7"
    assert rows["JWT user"]["user"] == "user-jwt-1024"
    assert rows["JSON GET"]["user"] == "-"
    # Four chunks 40 ms apart: the duration runs to the last byte.
    assert int(rows["streamed response"]["ms"]) >= 100
    assert len({row["txn"] for row in rows.values()}) == len(rows)

    stats_line = next(line for line in result.stdout.splitlines() if "middleware stats:" in line)
    assert re.search(r"\bcaptured=13\b", stats_line) and re.search(r"\bsent=13\b", stats_line)
    assert re.search(r"\bfailed=0\b", stats_line)
    # GET /health is sampled at 0% by the app config; GET /admin/users is blocked by a rule.
    assert re.search(r"\bsampled_out=1\b", stats_line)
    assert "GET /admin/users  blocked by rule 'block-admin'" in result.stdout
    assert "GET /health  sampled at 0%: served, no event sent" in result.stdout
    assert re.search(r"collector: http://127\.0\.0\.1:\d+", result.stdout)
    assert str(db_path) in result.stdout

    # What the collector stored: one event per request but the sampled-out one, credentials
    # masked.
    events = stored_events(db_path)
    assert len(events) == EVENT_COUNT
    incoming = [e for e in events if e.get("direction") != "Outgoing"]
    assert {row["txn"] for row in rows.values()} == {e["transaction_id"][:8] for e in incoming}

    # The app's own call, captured and joined to the request that made it; the printed pair
    # shows the link.
    outgoing = assert_outgoing_pair(events, "/prices/42")
    made_for = outgoing["metadata"]["incoming_transaction_id"]
    pair = pair_rows(result.stdout)
    assert [row["direction"] for row in pair] == ["Incoming", "Outgoing"]
    assert pair[0]["url"] == "/prices/42" and pair[0]["txn"] == rows["outgoing call"]["txn"]
    assert pair[1]["url"] == outgoing["request"]["uri"]
    assert pair[1]["txn"] == outgoing["transaction_id"][:8]
    assert pair[1]["incoming txn"] == made_for[:8] == pair[0]["txn"]
    account = next(e for e in events if e["request"]["uri"].endswith("/account"))
    assert account["request"]["headers"]["X-Api-Key"].startswith("<masked:")
    assert account["request"]["headers"]["Cookie"].startswith("session=<masked:")


def test_demo_never_shows_or_stores_a_credential(tmp_path: Path) -> None:
    assert len(CREDENTIALS) >= 3 and all(len(secret) >= 16 for secret in CREDENTIALS)
    db_path = tmp_path / "demo.sqlite"
    result = run_module("demo", "--db", str(db_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<masked:" in result.stdout
    stored = json.dumps(stored_events(db_path))
    for secret in CREDENTIALS:
        assert secret not in result.stdout
        assert secret not in result.stderr
        assert secret not in stored


def test_demo_counts_only_its_own_run_in_a_kept_database(tmp_path: Path) -> None:
    db_path = tmp_path / "demo.sqlite"
    assert run_module("demo", "--db", str(db_path)).returncode == 0
    second = run_module("demo", "--db", str(db_path))
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"the collector received {EVENT_COUNT} events" in second.stdout
    assert len(stored_events(db_path)) == 2 * EVENT_COUNT


def test_demo_keep_serves_the_collector_until_terminated(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "moesif_integrations", "demo", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT_DIR,
    )
    try:
        assert process.stdout is not None
        url: Optional[str] = None
        inspector: Optional[str] = None
        deadline = time.monotonic() + 30
        for line in process.stdout:
            match = re.match(r"collector: (http://\S+?),", line)
            if match:
                url = match.group(1)
            match = re.match(r"\s+inspector: (http://\S+)", line)
            if match:
                inspector = match.group(1)
            if "Ctrl-C stops them" in line or time.monotonic() > deadline:
                break
        assert url is not None
        with no_proxy().open(f"{url}/_collector/counts", timeout=5) as response:
            assert json.load(response)["events"] == EVENT_COUNT
        # The inspector's URL is printed, and it serves the page.
        assert inspector == f"{url}/"
        with no_proxy().open(inspector, timeout=5) as response:
            assert b"inspector.js" in response.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_help_lists_the_commands() -> None:
    result = run_module("--help")
    assert result.returncode == 0
    assert re.search(r"^\s+demo\s", result.stdout, re.MULTILINE)
    assert re.search(r"^\s+collector\b", result.stdout, re.MULTILINE)
    assert run_module().returncode == 2
    assert run_module("demo", "--no-such-option").returncode == 2


def test_collector_command_runs_the_local_collector() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moesif_integrations", "collector", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT_DIR,
    )
    try:
        wait_for_port(port, process)
        with no_proxy().open(f"http://127.0.0.1:{port}/_collector/counts", timeout=5) as response:
            assert json.load(response)["events"] == 0
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
        assert process.returncode == 0, output
        assert f"listening on http://127.0.0.1:{port}" in output.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ------------------------------------------------------------------------------- the example


def no_proxy() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(
    url: str, method: str = "GET", body: Optional[Dict[str, Any]] = None, api_key: str = ""
) -> Tuple[int, Any]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if api_key:
        headers["X-Api-Key"] = api_key
    data = json.dumps(body).encode() if body is not None else None
    outgoing = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with no_proxy().open(outgoing, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def example_env(collector: Collector, **extra: str) -> Dict[str, str]:
    env = {"MOESIF_APPLICATION_ID": "example-app-id-0123", "MOESIF_BASE_URI": collector.url}
    env.update(extra)
    return env


def by_route(events: List[Dict[str, Any]]) -> Dict[Tuple[str, str], Dict[str, Any]]:
    return {(e["request"]["verb"], e["request"]["uri"].split("/", 3)[3]): e for e in events}


def test_example_under_gunicorn_reaches_the_collector(collector: Collector) -> None:
    env = example_env(collector, MOESIF_EVENT_BATCH_TIMEOUT="0.1")
    with serve("gunicorn", "app:app", env, cwd=EXAMPLE_DIR) as served:
        assert request(served.url + "/health") == (200, {"ok": True})
        status, created = request(
            served.url + "/items", "POST", {"name": "gadget", "password": "hunter2"}, "key-alice"
        )
        assert status == 201 and created["name"] == "gadget"
        assert request(served.url + "/items", "POST", {"name": "x"})[0] == 401
        assert request(served.url + "/items")[0] == 200
        assert request(served.url + "/items/999")[0] == 404
        events = collector.wait_for_events(4, timeout=15)

    routes = by_route(events)
    # SKIP left the health check out.
    assert set(routes) == {("POST", "items"), ("GET", "items"), ("GET", "items/999")}
    assert len(events) == 4
    post = next(e for e in events if e["response"]["status"] == 201)
    assert post["user_id"] == "alice" and post["company_id"] == "acme"
    assert post["request"]["body"] == {"name": "gadget", "password": "<masked>"}
    assert post["request"]["headers"]["X-Api-Key"].startswith("<masked:")
    assert post["request"]["api_version"] == "1.0.0"
    assert post["metadata"] == {"datacenter": "local", "service": "items-api"}
    assert post["response"]["body"] == created
    statuses = sorted(e["response"]["status"] for e in events)
    assert statuses == [200, 201, 401, 404]
    anonymous = next(e for e in events if e["response"]["status"] == 401)
    assert anonymous["user_id"] is None
    stored = json.dumps(events)
    assert "key-alice" not in stored and "hunter2" not in stored
    assert {item.app_id for item in collector.stored("events")} == {"example-app-id-0123"}


def test_example_script_delivers_its_events_on_sigterm(collector: Collector) -> None:
    first_line = Path(EXAMPLE_SCRIPT).read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("# python -m moesif_integrations.collector ")
    assert "python examples/wsgi/app.py" in first_line

    port = free_port()
    # A batch timeout far beyond the test: the events can only come from the exit flush.
    env = dict(
        os.environ, PORT=str(port), **example_env(collector, MOESIF_EVENT_BATCH_TIMEOUT="60")
    )
    process = subprocess.Popen(
        [sys.executable, EXAMPLE_SCRIPT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT_DIR,
    )
    try:
        wait_for_port(port, process)
        assert request(f"http://127.0.0.1:{port}/items/1")[0] == 200
        assert collector.event_count() == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    (event,) = collector.wait_for_events(1, timeout=5)
    assert event["request"]["uri"] == f"http://127.0.0.1:{port}/items/1"
    assert event["response"]["body"] == {"id": 1, "name": "widget", "price": 9.5}


def test_example_refuses_to_start_without_an_application_id() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOESIF_")}
    result = subprocess.run(
        [sys.executable, "-c", "import app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=EXAMPLE_DIR,
    )
    assert result.returncode != 0
    assert "APPLICATION_ID" in result.stderr


def test_demo_without_urllib3_says_the_call_went_uncaptured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The call goes through the standard library, which the outgoing capture does not see.
    monkeypatch.setattr(demo, "OUTGOING_CLIENT", None)
    out = io.StringIO()
    assert demo.run_demo(out=out) == 0
    text = out.getvalue()
    assert table_rows(text)["outgoing call"]["status"] == "200"
    assert "pip install urllib3" in text
    assert "Outgoing" not in text
    assert f"the collector received {len(DEMO_ROWS)} events" in text
