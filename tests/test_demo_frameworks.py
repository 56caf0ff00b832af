"""``python -m moesif_integrations demo --framework ...``: the example apps side by side under real
servers, one table each."""

from __future__ import annotations

import importlib.util
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from servers import ROOT_DIR
from test_demo import PAIR_COLUMNS, assert_outgoing_pair

from moesif_integrations.collector import Collector
from moesif_integrations.demo import frameworks, stand_in_url
from moesif_integrations.demo.frameworks import EXAMPLES, run_example, run_frameworks

EXAMPLES_DIR = Path(ROOT_DIR) / "examples"

STATUSES = {
    "list": "200",
    "create": "201",
    "read one": "200",
    "not found": "404",
    "bad input": "400",
}
# The request whose view calls the rates API: an Outgoing event joins it.
OUTGOING_CALL = "outgoing call"


def installed(example: frameworks.Example) -> bool:
    return all(importlib.util.find_spec(name) for name in example.needs) and bool(
        frameworks.server_for(example)
    )


def tables(output: str) -> Dict[str, List[List[str]]]:
    """{framework: rows of cells} from the demo's output."""
    found: Dict[str, List[List[str]]] = {}
    lines = output.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^(\S+) \((\w+), application id demo-\1, [\d.]+ s\)$", line)
        if not match:
            continue
        rows = []
        for row in lines[index + 3 :]:
            if not row.strip() or row.startswith(("[", " ")):
                break
            rows.append(re.split(r"\s{2,}", row.strip()))
        found[match.group(1)] = rows
    return found


def printed_pairs(output: str) -> Dict[str, List[Dict[str, str]]]:
    """{framework: rows of the table of its outgoing call and the request that made it}."""
    found: Dict[str, List[Dict[str, str]]] = {}
    name = None
    lines = output.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^(\S+) \((\w+), application id demo-\1, [\d.]+ s\)$", line)
        if match:
            name = match.group(1)
        elif name is not None and line.split()[:2] == ["direction", "method"]:
            rows = [re.split(r"\s{2,}", row.strip()) for row in lines[index + 2 : index + 4]]
            found[name] = [dict(zip(PAIR_COLUMNS, row)) for row in rows]
    return found


def test_demo_framework_all_shows_every_installed_adapter_side_by_side() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "moesif_integrations", "demo", "--framework", "all"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shown = tables(result.stdout)
    expected = [example.name for example in EXAMPLES if installed(example)]
    assert sorted(shown) == sorted(expected)
    for name, rows in shown.items():
        by_label = {row[0]: row for row in rows}
        assert list(by_label) == [*STATUSES, "no credentials", OUTGOING_CALL], name
        assert by_label[OUTGOING_CALL][3] == "200" and by_label[OUTGOING_CALL][4] == "ada"
        for label, status in STATUSES.items():
            assert by_label[label][3] == status, (name, label)
            assert by_label[label][4] in ("ada", "grace"), (name, label)
        # Anonymous: refused (401, or 403 from Pyramid's security policy), and no user.
        assert by_label["no credentials"][3] in ("401", "403")
        assert by_label["no credentials"][4] == "-"
    # Each table is followed by the pair: the incoming request and the app's own call, joined
    # by the incoming request's transaction id.
    pairs = printed_pairs(result.stdout)
    assert sorted(pairs) == sorted(expected)
    for name, (incoming, outgoing) in pairs.items():
        txn = {row[0]: row for row in shown[name]}[OUTGOING_CALL][-1]
        assert (incoming["direction"], incoming["url"], incoming["txn"]) == (
            "Incoming",
            "/prices/1",
            txn,
        ), name
        assert outgoing["direction"] == "Outgoing", name
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1/rates\?symbols=EUR", outgoing["url"])
        assert outgoing["incoming txn"] == txn and outgoing["txn"] != txn, name
    # Progress goes to stderr, one step per framework.
    assert f"[{len(expected)}/{len(EXAMPLES)}]" in result.stderr or len(expected) < len(EXAMPLES)
    for example in EXAMPLES:
        if not installed(example):
            assert f"{example.name}: skipped" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("flask") is None, reason="flask not installed")
def test_wsgi_examples_fall_back_to_wsgiref(collector: Collector) -> None:
    flask = next(example for example in EXAMPLES if example.name == "flask")
    outcome = run_example(flask, "wsgiref", collector, io.StringIO(), EXAMPLES_DIR)
    assert outcome.problems == []
    assert [row[3] for row in outcome.rows] == ["200", "201", "200", "404", "400", "401", "200"]


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.name for example in EXAMPLES])
def test_each_example_reports_its_outgoing_call_joined_to_the_request(
    collector: Collector, example: frameworks.Example
) -> None:
    if not installed(example):
        pytest.skip(f"{example.name} or its server is not installed")
    server = frameworks.server_for(example)
    assert server is not None
    outcome = run_example(example, server, collector, io.StringIO(), EXAMPLES_DIR)
    assert outcome.problems == []
    events = [e.body for e in collector.stored("events") if e.app_id == f"demo-{example.name}"]
    assert len(events) == len(outcome.rows) + 1
    outgoing = assert_outgoing_pair(events, frameworks.PRICE_PATH)
    assert outgoing["request"]["uri"] == stand_in_url() + "?symbols=EUR"
    # The pair the demo prints is the one the collector holds.
    ((incoming, printed),) = outcome.pairs
    assert printed["transaction_id"] == outgoing["transaction_id"]
    assert incoming["transaction_id"] == outgoing["metadata"]["incoming_transaction_id"]


def test_a_missing_asgi_server_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def without_uvicorn(name: str, *args: object) -> object:
        return None if name == "uvicorn" else real_find_spec(name)

    monkeypatch.setattr(frameworks.importlib.util, "find_spec", without_uvicorn)
    monkeypatch.chdir(ROOT_DIR)  # the package may be installed from a wheel: examples/ is here
    out = io.StringIO()
    assert run_frameworks(["falcon-asgi"], out=out, log=io.StringIO()) == 1
    text = out.getvalue()
    assert "falcon-asgi: skipped" in text
    expected = "pip install falcon" if real_find_spec("falcon") is None else "pip install uvicorn"
    assert expected in text


def test_without_examples_it_says_where_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frameworks, "find_examples", lambda: None)
    assert run_frameworks(["flask"], out=io.StringIO(), log=io.StringIO()) == 2
