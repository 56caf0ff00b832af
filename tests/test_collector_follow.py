"""``python -m moesif_integrations.collector tail`` and ``counts`` against a running collector."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Dict, List

from servers import ROOT_DIR, free_port, post_json

from moesif_integrations.collector import Collector


def event(path: str, status: int, user: str) -> Dict[str, Any]:
    return {
        "request": {"time": "2026-01-01T00:00:00.000", "uri": f"http://h{path}", "verb": "GET"},
        "response": {"time": "2026-01-01T00:00:00.042", "status": status},
        "user_id": user,
    }


def post(collector: Collector, events: List[Dict[str, Any]], app_id: str = "app-a") -> None:
    assert post_json(collector.port, "/v1/events/batch", events, app_id).status == 201


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moesif_integrations.collector", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT_DIR,
    )


def test_tail_shows_the_last_events_then_follows_new_ones(collector: Collector) -> None:
    post(collector, [event(f"/old/{n}", 200, "u-old") for n in range(3)])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moesif_integrations",
            "collector",
            "tail",
            "--url",
            collector.url,
            "-n",
            "2",
            "--count",
            "4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT_DIR,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert "following events at" in process.stderr.readline()
        # The stored events come first; what arrives after them follows.
        shown = [process.stdout.readline(), process.stdout.readline()]
        post(collector, [event("/new/1", 201, "u-1"), event("/new/2", 503, "u-2")], "app-b")
        stdout, stderr = process.communicate(timeout=20)
        stdout = "".join(shown) + stdout
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    lines = stdout.splitlines()
    assert [line.split()[1:4] for line in lines] == [
        ["GET", "/old/1", "200"],
        ["GET", "/old/2", "200"],
        ["GET", "/new/1", "201"],
        ["GET", "/new/2", "503"],
    ]
    assert "user=u-2" in lines[3] and "app=app-b" in lines[3] and "42ms" in lines[3]


def test_tail_waits_for_a_collector_that_is_not_up_yet() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moesif_integrations.collector",
            "tail",
            "--url",
            url,
            "--count",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT_DIR,
    )
    try:
        assert process.stderr is not None
        process.stderr.readline()
        assert "waiting: no collector at" in process.stderr.readline()
        with Collector(port=port) as late:
            # Whether tail reads before or after this, the event is among what it prints.
            post(late, [event("/late", 200, "u")])
            stdout, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert stdout.split()[1:4] == ["GET", "/late", "200"]


def test_counts_prints_the_counters(collector: Collector) -> None:
    post(collector, [event("/a", 200, "u"), event("/b", 200, "u")], "app-a")
    post(collector, [event("/c", 200, "u")], "app-b")
    result = run("counts", "--url", collector.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "stored: events 3, users 0, companies 0, subscriptions 0, actions 0"
    assert any(line.split() == ["/v1/events/batch", "2"] for line in lines)
    assert any(line.split()[:3] == ["app-a", "events", "2"] for line in lines)
    assert any(line.split()[:3] == ["app-b", "events", "1"] for line in lines)
    as_json = json.loads(run("counts", "--url", collector.url, "--json").stdout)
    assert as_json["events"] == 3 and as_json["applications"]["app-b"]["events"] == 1


def test_counts_without_a_collector_says_so() -> None:
    result = run("counts", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "no collector at" in result.stderr
