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

from moesif_integrations.collector import Collector
from moesif_integrations.demo import frameworks
from moesif_integrations.demo.frameworks import EXAMPLES, run_example, run_frameworks

EXAMPLES_DIR = Path(ROOT_DIR) / "examples"

STATUSES = {
    "list": "200",
    "create": "201",
    "read one": "200",
    "not found": "404",
    "bad input": "400",
}


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
        assert list(by_label) == [*STATUSES, "no credentials"], name
        for label, status in STATUSES.items():
            assert by_label[label][3] == status, (name, label)
            assert by_label[label][4] in ("ada", "grace"), (name, label)
        # Anonymous: refused (401, or 403 from Pyramid's security policy), and no user.
        assert by_label["no credentials"][3] in ("401", "403")
        assert by_label["no credentials"][4] == "-"
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
    assert [row[3] for row in outcome.rows] == ["200", "201", "200", "404", "400", "401"]


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
