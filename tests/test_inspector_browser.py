"""The inspector in a real browser: headless Chromium from the system packages, driven by
Selenium through the system chromedriver (nothing is downloaded at run time).

Requests go through an app wrapped by MoesifMiddleware under a real server; the page shows them
as they arrive, filters them, opens one with its masked header marked, and keeps a window over
tens of thousands of stored events. Screenshots go to ``.artifacts/inspector/`` (or
``$MOESIF_ARTIFACTS_DIR/inspector``), printed at the end.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, List
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from servers import ROOT_DIR, http_request

from moesif_integrations import MoesifMiddleware
from moesif_integrations.collector import Collector
from moesif_integrations.demo import (
    CREDENTIALS,
    DEMO_REQUESTS,
    demo_app,
    identify_user,
    send_request,
)

pytestmark = pytest.mark.browser

CHROMIUM = next(
    (
        path
        for path in ("/usr/bin/chromium", shutil.which("chromium") or "")
        if os.path.exists(path)
    ),
    None,
)
CHROMEDRIVER = next(
    (
        path
        for path in ("/usr/bin/chromedriver", shutil.which("chromedriver") or "")
        if os.path.exists(path)
    ),
    None,
)
INSTALL_HINT = "apt-get install chromium chromium-driver (.ci/run does it)"
APP_ID = "browser-test-app"
ARTIFACTS = Path(os.environ.get("MOESIF_ARTIFACTS_DIR") or Path(ROOT_DIR) / ".artifacts")
SHOTS = ARTIFACTS / "inspector"
WAIT_SECONDS = 15


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(f"no Chromium and chromedriver on this machine: {INSTALL_HINT}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (requirements/test.txt has it)")
    profile = tempfile.mkdtemp(prefix="moesif-inspector-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1500,950",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # The system chromedriver, named explicitly: Selenium Manager never looks for another.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"\ninspector screenshots: {SHOTS}")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_stderr(self) -> io.StringIO:
        return io.StringIO()  # the traceback of the demo's /boom is expected


class ThreadedWSGIServer(WSGIServer):
    """wsgiref, one thread per request (the demo app streams slowly on one route)."""

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._handle, args=(request, client_address), daemon=True)
        thread.start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


@pytest.fixture
def wrapped_app(collector: Collector) -> Iterator[Any]:
    """The demo's app wrapped by MoesifMiddleware, served on loopback; yields (url, middleware)."""
    middleware = MoesifMiddleware(
        demo_app,
        {"APPLICATION_ID": APP_ID, "BASE_URI": collector.url, "IDENTIFY_USER": identify_user},
    )
    server = make_server("127.0.0.1", 0, middleware, ThreadedWSGIServer, QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", middleware
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2)
        middleware.shutdown(timeout=2)


def wait_until(browser: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.1).until(condition, what)


def column(browser: Any, name: str) -> List[str]:
    """The texts of one column, read in one go (live updates replace rows)."""
    texts: List[str] = browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(c => c.textContent)",
        f"#rows tbody td[data-col='{name}']",
    )
    return texts


def click_row(browser: Any, path: str) -> None:
    browser.execute_script(
        "const cells = document.querySelectorAll(\"#rows tbody td[data-col='path']\");"
        "Array.from(cells).find(c => c.textContent === arguments[0]).parentElement.click()",
        path,
    )


def shot(browser: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    browser.save_screenshot(str(path))
    return path


def send_demo_traffic(app_url: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for request in DEMO_REQUESTS:
        send_request(opener, app_url, request)


def test_the_inspector_shows_filters_and_opens_events(
    browser: Any, collector: Collector, wrapped_app: Any
) -> None:
    from selenium.webdriver.support.ui import Select

    app_url, middleware = wrapped_app
    browser.get(collector.url + "/")
    wait_until(
        browser, lambda b: "0 events stored" in b.find_element("id", "status").text, "status"
    )
    assert column(browser, "id") == []

    # Requests through the wrapped app appear without a reload.
    send_demo_traffic(app_url)
    collector.wait_for_events(len(DEMO_REQUESTS), timeout=WAIT_SECONDS)
    wait_until(browser, lambda b: len(column(b, "id")) == len(DEMO_REQUESTS), "rows to appear")
    paths = column(browser, "path")
    assert set(paths) == {request.path for request in DEMO_REQUESTS}
    assert column(browser, "status").count("500") == 1
    assert "user-jwt-1024" in column(browser, "user_id")
    shot(browser, "1-live-list")

    # Filters: status class, path substring, user.
    Select(browser.find_element("id", "f-status")).select_by_value("4xx")
    wait_until(browser, lambda b: column(b, "path") == ["/nope"], "the 4xx filter")
    Select(browser.find_element("id", "f-status")).select_by_value("")
    browser.find_element("id", "f-path").send_keys("items")
    wait_until(
        browser, lambda b: sorted(column(b, "path")) == ["/items", "/items/42"], "the path filter"
    )
    browser.find_element("id", "f-clear").click()
    browser.find_element("id", "f-user").send_keys("user-api-7")
    wait_until(browser, lambda b: column(b, "path") == ["/account"], "the user filter")
    shot(browser, "2-filtered")
    browser.find_element("id", "f-clear").click()
    wait_until(browser, lambda b: len(column(b, "id")) == len(DEMO_REQUESTS), "the filters cleared")

    # One event, whole: its Authorization header is shown masked and marked as such.
    click_row(browser, "/me")
    wait_until(browser, lambda b: b.find_element("id", "detail").text.strip(), "the detail")
    marks = browser.find_elements("css selector", "#detail mark.masked")
    marked = {mark.get_attribute("data-path"): mark.text for mark in marks}
    authorization = marked["request.headers.Authorization"]
    assert authorization.startswith('"Bearer <masked:') and authorization.endswith('>"')
    detail_text = browser.find_element("id", "detail").text
    assert not any(secret in detail_text for secret in CREDENTIALS)
    assert "request.headers.Authorization" in browser.find_element("id", "masked-summary").text

    # Cookies keep their names, API keys become fingerprints: both marked.
    click_row(browser, "/account")
    wait_until(
        browser,
        lambda b: "request.headers.X-Api-Key" in b.find_element("id", "masked-summary").text,
        "the /account detail",
    )
    marks = browser.find_elements("css selector", "#detail mark.masked")
    marked = {mark.get_attribute("data-path"): mark.text for mark in marks}
    assert marked["request.headers.X-Api-Key"].startswith('"<masked:')
    assert marked["request.headers.Cookie"].startswith('"session=<masked:')
    assert not any(secret in browser.find_element("id", "detail").text for secret in CREDENTIALS)
    shot(browser, "3-event-detail")

    # The counters: per endpoint and per application id.
    browser.find_element("css selector", "#tabs button[data-tab='counters']").click()
    wait_until(
        browser,
        lambda b: APP_ID in b.find_element("id", "app-counts").text,
        "the per-application counters",
    )
    app_row = browser.find_element("id", "app-counts").text.split("\n")[-1].split()
    assert app_row[:2] == [APP_ID, str(len(DEMO_REQUESTS))]
    assert "/v1/events/batch" in browser.find_element("id", "endpoint-counts").text
    shot(browser, "4-counters")

    # Users arrive in their own tab.
    assert middleware.update_user({"user_id": "user-api-7", "company_id": "c-9"}, sync=True)
    browser.find_element("css selector", "#tabs button[data-tab='users']").click()
    wait_until(browser, lambda b: column(b, "key") == ["user-api-7"], "the users tab")


def test_the_inspector_keeps_a_window_over_many_events(browser: Any, collector: Collector) -> None:
    total = 20_000
    event = {
        "request": {"time": "2026-01-01T00:00:00.000", "uri": "http://h/bulk", "verb": "GET"},
        "response": {"time": "2026-01-01T00:00:00.003", "status": 200},
    }
    headers = {"Content-Type": "application/json", "X-Moesif-Application-Id": "bulk"}
    for _ in range(total // 2000):
        reply = http_request(
            collector.port, "POST", "/v1/events/batch", json.dumps([event] * 2000).encode(), headers
        )
        assert reply.status == 201
    browser.get(collector.url + "/")
    wait_until(browser, lambda b: len(column(b, "id")) == 100, "the first window")
    assert browser.find_element("id", "range").text.startswith(f"1–100 of {total}")
    assert column(browser, "id")[0] == str(total)
    browser.find_element("id", "older").click()
    wait_until(browser, lambda b: column(b, "id")[:1] == [str(total - 100)], "the next window")
    assert len(column(browser, "id")) == 100
    browser.find_element("id", "newest").click()
    wait_until(browser, lambda b: column(b, "id")[:1] == [str(total)], "back to the newest")
    shot(browser, "5-many-events")
