"""The pytest plugin users load in their own tests (``moesif_events``), run as they would run it:
through the ``pytest11`` entry point, in a pytest of its own; and the example tests under
``examples/``, one per framework, that use it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from typing import Any, Dict, Tuple

import pytest
from servers import ROOT_DIR

from moesif_integrations.testing import Recorded

pytest_plugins = ("pytester",)

# example directory -> the frameworks its tests import
EXAMPLES: Dict[str, Tuple[str, ...]] = {
    "flask": ("flask",),
    "bottle": ("bottle", "webtest"),
    "pyramid": ("pyramid", "webtest"),
    "falcon": ("falcon",),
    "wsgi": ("webtest",),
}


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_the_example_tests_pass(example: str) -> None:
    missing = [name for name in EXAMPLES[example] if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_app.py"],
        cwd=os.path.join(ROOT_DIR, "examples", example),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout.splitlines()[-1]


PLUGIN_TESTS = """
import os
import pytest

from moesif_integrations import MoesifMiddleware


def hello(environ, start_response):
    status = "201 Created" if environ["REQUEST_METHOD"] == "POST" else "200 OK"
    start_response(status, [("Content-Type", "application/json")])
    return [b'{"hello": "world"}']


def call(app, method, path, **headers):
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "t",
        "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": __import__("io").BytesIO(),
        **{"HTTP_" + name.upper(): value for name, value in headers.items()},
    }
    body = app(environ, lambda status, headers, exc_info=None: None)
    try:
        return b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()


@pytest.fixture
def app(moesif_events):
    settings = {**moesif_events.settings, "IDENTIFY_USER": lambda app, environ, *rest: "u-1"}
    middleware = MoesifMiddleware(hello, settings)
    yield middleware
    middleware.shutdown(timeout=1)


def test_first(app, moesif_events):
    assert os.environ["MOESIF_BASE_URI"] == moesif_events.url
    call(app, "POST", "/items", x_foo="bar")
    call(app, "GET", "/items/1")
    events = moesif_events.wait(2)
    assert [e.path for e in events] == ["/items", "/items/1"]
    assert moesif_events.last.user_id == "u-1"
    assert moesif_events.last.response.status == 200
    assert moesif_events.all(path="/items")[0].response.status == 201
    assert moesif_events.all(path="/items")[0].request.headers["X-Foo"] == "bar"
    assert moesif_events.all(status=201, method="post", user_id="u-1")
    assert moesif_events.all(status=404) == []
    assert moesif_events.last.response.body == {"hello": "world"}


def test_second_starts_empty(app, moesif_events):
    assert moesif_events.events == []
    call(app, "GET", "/again")
    assert len(moesif_events.wait(1)) == 1


def test_env_app(moesif_events):
    # An app that reads MOESIF_APPLICATION_ID and MOESIF_BASE_URI from the environment.
    app = MoesifMiddleware(hello, {})
    try:
        call(app, "GET", "/from-env")
        assert moesif_events.wait(1)[0].path == "/from-env"
    finally:
        app.shutdown(timeout=1)


def test_timeout_says_what_arrived(app, moesif_events):
    call(app, "GET", "/only-one")
    expected = "expected at least 2 events within 0.3 s; 1 arrived: GET /only-one 200"
    with pytest.raises(AssertionError, match=expected):
        moesif_events.wait(2, timeout=0.3)


def test_last_without_events(moesif_events):
    with pytest.raises(AssertionError, match="no event reached the collector"):
        moesif_events.last
"""


def test_the_fixture_in_a_users_test_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=PLUGIN_TESTS)
    # The plugin comes from the installed package's entry point, not from this suite.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=5)


def test_recorded_reads_json_as_attributes() -> None:
    event = Recorded(
        {
            "request": {"uri": "http://h/items?x=1", "headers": {"Content-Type": "a/b"}},
            "response": {"status": 201, "body": [{"id": 1}]},
            "user_id": None,
        }
    )
    assert event.path == "/items"
    assert event.response.status == 201 and event["response"]["status"] == 201
    assert event.request.headers["content-type"] == "a/b"
    assert event.response.body[0].id == 1
    assert event.user_id is None
    assert event == event.raw and dict(event.request.headers) == {"Content-Type": "a/b"}
    with pytest.raises(AttributeError, match="no field 'nope'"):
        event.nope  # noqa: B018
    with pytest.raises(KeyError):
        event.request.headers["X-Missing"]
    reprs: Any = repr(event)
    assert reprs.startswith("Recorded(")
