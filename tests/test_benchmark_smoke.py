"""The overhead benchmark runs end to end and every event it sends arrives.

Speed is measured by ``benchmarks/overhead.py``, never asserted here: this only proves the
benchmark works (tiny counts, the generic middleware with sender threads and with
DELIVERY_PROCESS, moesifwsgi beside them when installed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flask")

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "overhead.py"
REQUESTS = 200
PIPELINE_EVENTS = 300
# The delivery process's memory and CPU are read from /proc (Linux); elsewhere they are n/a.
HAVE_PROC = Path("/proc/self/stat").exists()


def test_benchmark_completes_and_delivers_every_event(tmp_path: Path) -> None:
    integrations = ["generic", "generic-process"]
    if importlib.util.find_spec("moesifwsgi") is not None:
        integrations.append("moesifwsgi")
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    # The benchmark's settings come from its arguments, never from a developer's environment.
    for key in [k for k in env if k.startswith("MOESIF_")]:
        del env[key]
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK),
            "--quick",
            "--requests",
            str(REQUESTS),
            "--rounds",
            "1",
            "--pipeline-events",
            str(PIPELINE_EVENTS),
            "--only",
            ",".join(integrations),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))

    cases = {case["key"]: case for case in report["cases"]}
    for integration in ["bare", *integrations]:
        for request in ("GET", "POST"):
            assert f"flask/{integration}/{request}" in cases
    for case in cases.values():
        if case["integration"] == "bare":
            assert case["delivered"] is None
            continue
        assert case["sent"] == REQUESTS
        assert case["delivered"] == case["sent"], case
        assert case["ratio"] > 0
        assert case["p99_ms"] > 0

    # A sustained run may outpace delivery, but every event is delivered or counted as dropped.
    sustained_runs = report["sustained"]
    assert [s["integration"] for s in sustained_runs] == ["generic", "generic-process"]
    for sustained in sustained_runs:
        assert sustained["requests"] == 3 * sustained["queue_size"]
        assert sustained["delivered"] + sustained["dropped"] == sustained["requests"], sustained

    pipeline = report["pipeline"]
    assert {(p["integration"], p["spec"]) for p in pipeline} == {
        (integration, request) for integration in integrations for request in ("GET", "POST")
    }
    for measure in pipeline:
        assert measure["delivered"] == measure["sent"] > 0, measure
        assert measure["capacity"] > 0
        assert measure["background_us"] is not None
        if measure["integration"] != "generic-process":
            assert measure["memory_bytes_per_event"] > 0
            assert measure["delivery_process_rss_bytes_per_event"] is None
            assert measure["delivery_process_us"] is None
            continue
        # DELIVERY_PROCESS: the events wait in the delivery process, all of them before the
        # memory is read; the app's process is measured as for the others (next to nothing
        # per event, possibly below zero), the delivery process from /proc. With so few
        # events its RSS growth and CPU ticks may round to zero: present is what counts here.
        assert measure["queued_when_measured"] == PIPELINE_EVENTS, measure
        assert measure["memory_bytes_per_event"] is not None
        if HAVE_PROC:
            assert measure["delivery_process_rss_bytes_per_event"] is not None, measure
            assert measure["delivery_process_us"] >= 0, measure

    # The ceiling section: the bare Flask app plus one ready record queued per request, its
    # events delivered (checked with every case above) and complete (no note about them).
    ceiling = report["ceiling"]
    assert {(c["integration"], c["request"]) for c in ceiling} == {
        (integration, request)
        for integration in ("bare", "ceiling", "ceiling-process")
        for request in ("GET", "POST")
    }
    for integration in ("ceiling", "ceiling-process"):
        for request in ("GET", "POST"):
            assert f"flask/{integration}/{request}" in cases
    assert not [note for note in report["notes"] if "ceiling" in note], report["notes"]

    # The Markdown report is on stdout, ready to paste.
    assert "| bare Flask app | GET |" in completed.stdout
    assert "| this project (generic middleware, DELIVERY_PROCESS on) | POST |" in completed.stdout
    assert "## Ceiling: what delivery alone leaves" in completed.stdout
    assert completed.stdout == report["report"]


@pytest.mark.skipif(importlib.util.find_spec("waitress") is None, reason="needs waitress")
def test_server_benchmark_completes_and_counts_every_event(tmp_path: Path) -> None:
    out = tmp_path / "servers.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOESIF_")}
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK.parent / "servers.py"),
            "--duration",
            "1",
            "--runs",
            "1",
            "--servers",
            "waitress",
            "--frameworks",
            "flask",
            "--requests",
            "POST",
            "--integrations",
            "generic",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr
    assert "| waitress 4 threads | flask | POST | default (MoesifMiddleware) |" in completed.stdout
    bare, wrapped = json.loads(out.read_text())
    assert bare["integration"] == "bare" and bare["runs"][0]["requests"] > 0
    (run,) = wrapped["runs"]
    # Every answered request's event arrived (a request cut off by the load's end may add one).
    assert run["requests"] > 0 and run["requests"] <= run["events"] <= run["requests"] + 16


def test_the_sampling_and_governance_rows_measure_what_they_name() -> None:
    """Each ``decide`` row's app answers as the bare one does, and does what its name says."""
    sys.path.insert(0, str(BENCHMARK.parent))
    try:
        from apps import DECISION_INTEGRATIONS, FRAMEWORKS, BenchSettings
        from drivers import REQUESTS as SPECS
        from measure import make_driver
    finally:
        sys.path.remove(str(BENCHMARK.parent))
    flask = next(f for f in FRAMEWORKS if f.name == "flask")
    settings = BenchSettings("http://127.0.0.1:9", batch_size=1000, batch_timeout=600.0)
    expected = {
        "generic-disabled": lambda stats: stats == {},
        "generic-rules50": lambda stats: stats["captured"] == 100 and stats["sampled_out"] == 0,
        "generic-sampled-out": lambda stats: stats["captured"] == 0 and stats["sampled_out"] == 100,
        "generic-sample10": lambda stats: (
            0 < stats["captured"] < 40 and stats["captured"] + stats["sampled_out"] == 100
        ),
    }
    assert set(expected) == set(DECISION_INTEGRATIONS)
    for integration in DECISION_INTEGRATIONS:
        built = flask.build(integration, settings)
        try:
            for spec in SPECS:
                driver = make_driver(built, spec)
                status, _body = driver.check()
                assert status == spec.expected_status, (integration, spec.name)
                driver.close()
            stats_before = built.stats()
            driver = make_driver(built, SPECS[0])
            driver.run(100)
            driver.close()
            stats = built.stats()
            if stats:
                for name in ("captured", "sampled_out"):
                    stats[name] -= stats_before[name]
            assert expected[integration](stats), (integration, stats)
        finally:
            built.shutdown(timeout=0.1)
