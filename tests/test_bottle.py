"""The Bottle plugin's own idioms, through WebTest and a real server, to the local collector."""

from __future__ import annotations

import base64
import logging
import os
import uuid
import wsgiref.util
from typing import Any, Callable, Dict, Iterator, List

import pytest

bottle = pytest.importorskip("bottle")
webtest = pytest.importorskip("webtest")

from harness import shut_down_after_test  # noqa: E402
from servers import ROOT_DIR, serve  # noqa: E402
from wsgi_client import make_environ  # noqa: E402

from moesif_integrations import ConfigurationError, MoesifMiddleware, Settings  # noqa: E402
from moesif_integrations.bottle import MoesifPlugin  # noqa: E402

EXAMPLE_DIR = os.path.join(ROOT_DIR, "examples", "bottle")
BOTTLE_013 = tuple(int(part) for part in bottle.__version__.split(".")[:2]) >= (0, 13)
APP_ID = "bottle-app"  # in the settings of the ``base`` fixture (conftest.py)


def make_app() -> Any:
    app = bottle.Bottle()

    @app.get("/items/<item_id>")
    def get_item(item_id: str) -> Dict[str, Any]:
        return {"id": item_id}

    return app


def install(app: Any, settings: Any = None, **options: Any) -> Any:
    return app.install(shut_down_after_test(MoesifPlugin(settings, **options)))


def delivered(plugin: MoesifPlugin, collector: Any, count: int) -> List[Dict[str, Any]]:
    assert plugin.flush(timeout=10), plugin.stats()
    events = collector.wait_for_events(count, timeout=5)
    assert len(events) == count, [e["request"]["uri"] for e in events]
    return events


def metadata_hook(app: Any, environ: Dict[str, Any]) -> Dict[str, Any]:
    """Named in app.config as "test_bottle:metadata_hook"."""
    return {"path": environ["PATH_INFO"], "app": type(app).__name__}


def test_not_found_and_method_not_allowed_are_recorded(
    base: Dict[str, Any], collector: Any
) -> None:
    app = make_app()
    plugin = install(app, base)
    client = webtest.TestApp(app)
    missing = client.get("/no/such/route", expect_errors=True)
    wrong_method = client.post("/items/1", expect_errors=True)
    assert (missing.status_int, wrong_method.status_int) == (404, 405)
    events = delivered(plugin, collector, 2)
    by_id = {event["transaction_id"]: event for event in events}
    assert by_id[missing.headers["X-Moesif-Transaction-Id"]]["response"]["status"] == 404
    assert by_id[wrong_method.headers["X-Moesif-Transaction-Id"]]["response"]["status"] == 405


def test_route_is_the_matched_rule(base: Dict[str, Any]) -> None:
    exchanges: Dict[str, Any] = {}

    def keep_exchange(app: Any, environ: Dict[str, Any]) -> None:
        exchanges[environ["PATH_INFO"]] = environ["moesif.exchange"]

    app = make_app()
    install(app, base, GET_METADATA=keep_exchange)
    client = webtest.TestApp(app)
    client.get("/items/7")
    client.get("/nothing/here", expect_errors=True)
    assert exchanges["/items/7"].record.route == "/items/<item_id>"
    assert exchanges["/nothing/here"].record.route is None


def test_streamed_body_passes_through(base: Dict[str, Any], collector: Any) -> None:
    produced: List[str] = []
    app = bottle.Bottle()

    @app.get("/feed")
    def feed() -> Iterator[str]:
        for n in range(3):
            produced.append(f"line {n}\n")
            yield f"line {n}\n"  # text: Bottle encodes each chunk as it comes

    plugin = install(app, base)
    iterable = app(make_environ("GET", "/feed"), lambda *args: None)
    iterator = iter(iterable)
    assert next(iterator) == b"line 0\n"
    assert len(produced) == 1  # Bottle peeks at the first chunk; nothing more was produced
    rest = b"".join(iterator)
    iterable.close()
    assert rest == b"line 1\nline 2\n"
    (event,) = delivered(plugin, collector, 1)
    assert base64.b64decode(event["response"]["body"]) == b"line 0\nline 1\nline 2\n"


def test_static_file_keeps_the_servers_file_wrapper(
    base: Dict[str, Any], collector: Any, tmp_path: Any
) -> None:
    (tmp_path / "report.csv").write_bytes(b"a,b\n1,2\n")
    app = bottle.Bottle()

    @app.get("/files/<name>")
    def files(name: str) -> Any:
        return bottle.static_file(name, root=str(tmp_path))

    plugin = install(app, base)
    environ = make_environ("GET", "/files/report.csv")
    environ["wsgi.file_wrapper"] = wsgiref.util.FileWrapper
    statuses: List[str] = []
    result = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert isinstance(result, wsgiref.util.FileWrapper)  # sendfile still possible
    assert b"".join(result) == b"a,b\n1,2\n" and statuses == ["200 OK"]
    result.close()
    (event,) = delivered(plugin, collector, 1)
    assert event["response"]["status"] == 200 and event["request"]["uri"].endswith("/report.csv")


def test_skip_per_route(base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    plugin = install(app, base)

    @app.get("/by-name", skip=["moesif"])
    def by_name() -> str:
        return "by name"

    @app.get("/by-instance", skip=[plugin])
    def by_instance() -> str:
        return "by instance"

    @app.get("/by-class", skip=[MoesifPlugin])
    def by_class() -> str:
        return "by class"

    @app.get("/all-plugins", skip=True)
    def all_plugins() -> str:
        return "no plugins"

    client = webtest.TestApp(app)
    for path in ("/by-name", "/by-instance", "/by-class", "/all-plugins"):
        reply = client.get(path)
        assert reply.status_int == 200 and "X-Moesif-Transaction-Id" not in reply.headers
    assert "X-Moesif-Transaction-Id" in client.get("/items/1").headers
    (event,) = delivered(plugin, collector, 1)
    assert event["request"]["uri"].endswith("/items/1")
    assert plugin.stats()["skipped"] == 4 and plugin.stats()["captured"] == 1


def test_route_config_turns_capture_off(
    base: Dict[str, Any],
    collector: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()
    plugin = install(app, base)

    @app.get("/off", moesif={"enabled": False})
    def off() -> str:
        return "off"

    @app.get("/off-text", **{"moesif.enabled": "false"})
    def off_text() -> str:
        return "off"

    @app.get("/on-text", **{"moesif.enabled": "yes"})
    def on_text() -> str:
        return "on"

    @app.get("/bad", **{"moesif.enabled": "perhaps"})
    def bad() -> str:
        return "captured all the same"

    client = webtest.TestApp(app)
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        replies = {path: client.get(path) for path in ("/off", "/off-text", "/on-text", "/bad")}
        client.get("/bad")
    assert "X-Moesif-Transaction-Id" not in replies["/off"].headers
    assert "X-Moesif-Transaction-Id" not in replies["/off-text"].headers
    events = delivered(plugin, collector, 3)
    assert sorted(event["request"]["uri"].rsplit("/", 1)[1] for event in events) == [
        "bad",
        "bad",
        "on-text",
    ]
    warnings = [r.getMessage() for r in caplog.records if "moesif.enabled" in r.getMessage()]
    assert len(warnings) == 1 and "/bad" in warnings[0] and "perhaps" in warnings[0]


def test_mounted_app_is_recorded_by_the_parent(base: Dict[str, Any], collector: Any) -> None:
    child = make_app()

    @child.get("/quiet", moesif={"enabled": False})
    def quiet() -> str:
        return "quiet"

    parent = bottle.Bottle()
    parent.mount("/child/", child)
    plugin = install(parent, base)
    client = webtest.TestApp(parent)
    assert client.get("/child/items/4").json == {"id": "4"}
    assert client.get("/child/missing", expect_errors=True).status_int == 404
    assert client.get("/child/quiet").text == "quiet"
    events = delivered(plugin, collector, 2)
    assert sorted(event["response"]["status"] for event in events) == [200, 404]


@pytest.mark.skipif(not BOTTLE_013, reason="Bottle 0.12 mounts apps as WSGI apps")
def test_plugin_on_a_merged_child_app_warns(
    base: Dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    child = make_app()
    install(child, base)
    parent = bottle.Bottle()
    parent.mount("/child/", child)  # 0.13 serves the child's routes from the parent
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        assert webtest.TestApp(parent).get("/child/items/4").json == {"id": "4"}
    assert any("mounted into another one" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("how", ["uninstall", "app.close"])
def test_close_flushes_and_unhooks(how: str, base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    plugin = install(app, base, EVENT_BATCH_TIMEOUT=60)
    client = webtest.TestApp(app)
    client.get("/items/1")
    client.get("/items/2")
    assert collector.event_count() == 0  # waiting for a batch that will not fill
    if how == "uninstall":
        assert app.uninstall(plugin) == [plugin]
    else:
        app.close()
    assert collector.event_count() == 2  # close() delivered before it returned
    assert "wsgi" not in app.__dict__
    assert "X-Moesif-Transaction-Id" not in client.get("/items/3").headers
    assert plugin.stats()["captured"] == 2


def test_settings_from_app_config(collector: Any, tmp_path: Any) -> None:
    ini = tmp_path / "app.ini"
    ini.write_text(
        "[moesif]\n"
        "application_id = from-ini\n"
        f"base_uri = {collector.url}\n"
        "event_batch_timeout = 0.05\n"
        "log_body = false\n"
        "api_version = 2.0\n"
        "get_metadata = test_bottle:metadata_hook\n"
    )
    app = make_app()
    app.config.load_config(str(ini))
    plugin = install(app)
    assert plugin.settings.log_body is False
    webtest.TestApp(app).get("/items/5")
    (event,) = delivered(plugin, collector, 1)
    assert event["request"]["api_version"] == "2.0"
    assert event["metadata"] == {"path": "/items/5", "app": "Bottle"}
    assert event["response"].get("body") is None
    assert [item.app_id for item in collector.stored("events")] == ["from-ini"]


def test_constructor_overrides_app_config(base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    app.config.update({"moesif.api_version": "from-config", "moesif.log_body": "false"})
    plugin = install(app, base, API_VERSION="from-constructor")
    webtest.TestApp(app).get("/items/5")
    (event,) = delivered(plugin, collector, 1)
    assert event["request"]["api_version"] == "from-constructor"
    assert event["response"].get("body") is None  # config still sets what the constructor leaves


def test_bad_app_config_fails_at_install(base: Dict[str, Any]) -> None:
    app = make_app()
    app.config.update({"moesif.log_body": "perhaps", "moesif.aplication_id": "x"})
    with pytest.raises(ConfigurationError) as failure:
        app.install(MoesifPlugin(base))
    message = str(failure.value)
    assert "LOG_BODY (Bottle app.config): got 'perhaps'" in message
    assert "did you mean 'APPLICATION_ID'" in message
    assert "wsgi" not in app.__dict__ and not any(isinstance(p, MoesifPlugin) for p in app.plugins)


def test_settings_object_and_app_config_do_not_mix(base: Dict[str, Any]) -> None:
    app = make_app()
    app.config["moesif.api_version"] = "1"
    with pytest.raises(ConfigurationError, match=r"moesif\.api_version would be ignored"):
        app.install(MoesifPlugin(Settings.load(base)))


def test_config_changed_after_install_is_reported(
    base: Dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    install(app, base)
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        app.config["moesif.log_body"] = "false"
        app.config["unrelated.key"] = "1"
    (line,) = [r.getMessage() for r in caplog.records]
    assert "moesif.log_body" in line and "before app.install()" in line


def test_disabled_in_app_config_is_a_pass_through(base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    app.config["moesif.enabled"] = "false"
    plugin = install(app, base)
    reply = webtest.TestApp(app).get("/items/1")
    assert reply.json == {"id": "1"} and "X-Moesif-Transaction-Id" not in reply.headers
    assert "wsgi" not in app.__dict__
    assert plugin.flush(timeout=1) and plugin.stats() == {}
    assert collector.event_count() == 0


def test_two_apps_with_their_own_settings(base: Dict[str, Any], collector: Any) -> None:
    first, second = make_app(), make_app()
    first_plugin = install(first, base, APPLICATION_ID="app-one", API_VERSION="1")
    second_plugin = install(second, base, APPLICATION_ID="app-two", API_VERSION="2")
    webtest.TestApp(first).get("/items/1")
    webtest.TestApp(second).get("/items/2")
    webtest.TestApp(second).get("/items/3")
    assert first_plugin.flush(timeout=10) and second_plugin.flush(timeout=10)
    collector.wait_for_events(3, timeout=5)
    stored = {
        item.body["request"]["uri"].rsplit("/", 1)[1]: (item.app_id, item.body)
        for item in collector.stored("events")
    }
    assert {key: app_id for key, (app_id, _) in stored.items()} == {
        "1": "app-one",
        "2": "app-two",
        "3": "app-two",
    }
    assert stored["1"][1]["request"]["api_version"] == "1"
    assert stored["3"][1]["request"]["api_version"] == "2"
    assert first_plugin.stats()["captured"] == 1 and second_plugin.stats()["captured"] == 2


def test_one_plugin_per_app(base: Dict[str, Any]) -> None:
    first = make_app()
    plugin = install(first, base)
    with pytest.raises(bottle.PluginError, match="one app"):
        make_app().install(plugin)
    with pytest.raises(bottle.PluginError, match="already installed"):
        first.install(MoesifPlugin(base))


def test_hooks_see_the_bottle_app_and_request(base: Dict[str, Any], collector: Any) -> None:
    seen: List[Any] = []

    def identify_user(app: Any, environ: Dict[str, Any], response_headers: Dict[str, str]) -> Any:
        seen.append((app, response_headers.get("Content-Type")))
        # Bottle's thread-local request is still this request once the response has ended.
        return bottle.request.get_header("X-User")

    app = make_app()
    plugin = install(app, base, IDENTIFY_USER=identify_user)
    webtest.TestApp(app).get("/items/1", headers={"X-User": "ada"})
    (event,) = delivered(plugin, collector, 1)
    assert event["user_id"] == "ada"
    assert seen == [(app, "application/json")]


def test_an_outer_capture_records_the_exchange_once(base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    plugin = install(app, base)
    outer = MoesifMiddleware(app, base)
    try:
        reply = webtest.TestApp(outer).get("/items/1")
        assert [k for k, _ in reply.headerlist].count("X-Moesif-Transaction-Id") == 1
        assert outer.flush(timeout=10)
        (event,) = collector.wait_for_events(1, timeout=5)
        assert event["transaction_id"] == reply.headers["X-Moesif-Transaction-Id"]
        assert plugin.stats()["captured"] == 0
    finally:
        outer.shutdown(timeout=2)


def test_unhandled_exception_without_catchall(base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    app.config["catchall"] = False

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("view failed")

    plugin = install(app, base)
    with pytest.raises(RuntimeError, match="view failed"):
        webtest.TestApp(app).get("/boom")
    (event,) = delivered(plugin, collector, 1)
    assert event["response"]["status"] == 500


def test_example_app_under_gunicorn(collector: Any) -> None:
    requests = pytest.importorskip("requests")
    env = {
        "MOESIF_APPLICATION_ID": "example-app",
        "MOESIF_BASE_URI": collector.url,
        "MOESIF_EVENT_BATCH_TIMEOUT": "0.1",
    }
    calls: List[Callable[[str], Any]] = [
        lambda url: requests.get(f"{url}/items", headers={"X-Api-Key": "key-ada"}),
        lambda url: requests.post(
            f"{url}/items", json={"name": "bolt", "qty": 3}, headers={"X-Api-Key": "key-grace"}
        ),
        # /items/1 exists in every worker; what a POST adds lives in one worker's memory only.
        lambda url: requests.get(f"{url}/items/1", headers={"X-Api-Key": "key-grace"}),
        lambda url: requests.get(f"{url}/items/99", headers={"X-Api-Key": "key-ada"}),
        lambda url: requests.get(f"{url}/items"),
    ]
    rounds = 5
    with serve("gunicorn", "app:app", env, "--workers", "2", cwd=EXAMPLE_DIR) as served:
        health = [requests.get(f"{served.url}/health") for _ in range(rounds)]
        replies = [call(served.url) for _ in range(rounds) for call in calls]
        events = collector.wait_for_events(len(replies), timeout=15)
    assert [r.status_code for r in replies[: len(calls)]] == [200, 201, 200, 404, 401]
    assert all(r.status_code == 200 and "X-Moesif-Transaction-Id" not in r.headers for r in health)
    assert len(events) == len(replies)  # /health is left out by its route config
    by_id = {event["transaction_id"]: event for event in events}
    for reply in replies:
        event = by_id[reply.headers["X-Moesif-Transaction-Id"]]
        assert uuid.UUID(event["transaction_id"])
        assert event["response"]["status"] == reply.status_code
        assert event["request"]["uri"] == reply.url
        assert event["request"]["api_version"] == "1.0"
    posts = [event for event in events if event["request"]["verb"] == "POST"]
    assert len(posts) == rounds
    assert all(event["request"]["body"] == {"name": "bolt", "qty": 3} for event in posts)
    assert all(e["user_id"] == "grace" and e["company_id"] == "cobol-inc" for e in posts)
    anonymous = [event for event in events if event["response"]["status"] == 401]
    assert len(anonymous) == rounds and all(event["user_id"] is None for event in anonymous)
    assert {item.app_id for item in collector.stored("events")} == {"example-app"}
