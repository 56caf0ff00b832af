"""The Flask extension's own idioms, in-process with Flask's test client and end to end under
gunicorn, delivering to the local collector over HTTP."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any, Callable, Dict, Iterator, List

import pytest

flask = pytest.importorskip("flask")

from harness import shut_down_after_test  # noqa: E402
from servers import ROOT_DIR, serve  # noqa: E402

from moesif_integrations.core.config.schema import ConfigurationError, Settings  # noqa: E402
from moesif_integrations.flask import Moesif, MoesifApp  # noqa: E402

EXAMPLE_DIR = os.path.join(ROOT_DIR, "examples", "flask")
APP_ID = "flask-test-app"  # in the settings of the ``base`` fixture (conftest.py)


def deliver(integration: Any, collector: Any, count: int = 1) -> List[Dict[str, Any]]:
    assert integration.flush(timeout=10), integration.stats()
    return collector.wait_for_events(count, timeout=5)


def get(app: Any, path: str, **kwargs: Any) -> Any:
    """A GET through Flask's test client, body read and response closed as a server would."""
    return app.test_client().get(path, buffered=True, **kwargs)


def make_app(name: str = "api", **config: Any) -> Any:
    app = flask.Flask(name)
    app.config.update(config)
    # The extension may be attached to the app later in the test.
    shut_down_after_test(lambda: app.extensions.get("moesif"))

    @app.get("/items/<item_id>")
    def get_item(item_id: str) -> Any:
        return {"id": item_id}

    return app


def route_hook(app: Any, environ: Dict[str, Any]) -> Dict[str, Any]:
    """GET_METADATA that reports what the extension noted so far (route, request context)."""
    return {"route": environ["moesif.exchange"].record.route, "path": flask.request.path}


def test_factory_pattern_one_extension_many_apps(base: Dict[str, Any], collector: Any) -> None:
    moesif = Moesif(settings=base)

    def create_app(version: str) -> Any:
        app = make_app(MOESIF_API_VERSION=version)
        moesif.init_app(app)
        return app

    first, second = create_app("1.0"), create_app("2.0")
    assert isinstance(first.extensions["moesif"], MoesifApp)
    assert first.extensions["moesif"] is not second.extensions["moesif"]
    assert first.extensions["moesif"].extension is moesif
    get(first, "/items/1")
    get(second, "/items/2")
    events = deliver(moesif, collector, 2)
    versions = {e["request"]["uri"].rsplit("/", 1)[1]: e["request"]["api_version"] for e in events}
    assert versions == {"1": "1.0", "2": "2.0"}
    stats = moesif.stats()
    assert (
        stats["captured"]
        == 2
        == sum(app.extensions["moesif"].stats()["captured"] for app in (first, second))
    )


def test_two_apps_with_different_settings_do_not_clash(
    base: Dict[str, Any], collector: Any
) -> None:
    quiet, loud = make_app("quiet"), make_app("loud")
    quiet_moesif = Moesif(quiet, dict(base, APPLICATION_ID="quiet-app-id", LOG_BODY=False))
    loud_moesif = Moesif(loud, dict(base, APPLICATION_ID="loud-app-id"))
    get(quiet, "/items/q")
    get(loud, "/items/l")
    deliver(quiet_moesif, collector)
    deliver(loud_moesif, collector, 2)
    by_app = {item.app_id: item.body for item in collector.stored("events")}
    assert set(by_app) == {"quiet-app-id", "loud-app-id"}
    assert by_app["quiet-app-id"]["request"]["uri"].endswith("/items/q")
    assert by_app["quiet-app-id"]["response"].get("body") is None
    assert by_app["loud-app-id"]["response"]["body"] == {"id": "l"}


def test_settings_from_app_config(base: Dict[str, Any], collector: Any) -> None:
    app = make_app(**{f"MOESIF_{key}": value for key, value in base.items()})
    # Config files and environment-fed config give text: parsed like any text source.
    app.config.update(
        MOESIF_LOG_BODY="false",
        MOESIF_API_VERSION="3.1",
        MOESIF_GET_METADATA="test_flask:route_hook",
    )
    moesif = Moesif(app)
    assert moesif.settings_for(app).log_body is False
    get(app, "/items/7")
    (event,) = deliver(moesif, collector)
    assert event["request"]["api_version"] == "3.1"
    assert event["response"].get("body") is None
    assert event["metadata"] == {"route": "/items/<item_id>", "path": "/items/7"}


def test_delivery_process_from_app_config_keeps_what_the_extension_knows(
    base: Dict[str, Any], collector: Any
) -> None:
    app = make_app(**{f"MOESIF_{key}": value for key, value in base.items()})
    app.config.update(MOESIF_DELIVERY_PROCESS="true", MOESIF_GET_METADATA="test_flask:route_hook")
    moesif = Moesif(app)
    for item in ("a", "b", "c"):
        assert get(app, f"/items/{item}").status_code == 200
    events = deliver(moesif, collector, 3)
    pipeline = app.extensions["moesif"].pipeline
    process = pipeline.delivery._process
    assert process is not None and process.pid != os.getpid()
    # Hooks and the route ran in the app's process; the event was built in the other one.
    assert sorted(e["metadata"]["path"] for e in events) == ["/items/a", "/items/b", "/items/c"]
    assert {e["metadata"]["route"] for e in events} == {"/items/<item_id>"}
    assert moesif.stats()["sent"] == 3


def test_bad_app_config_fails_at_init_naming_the_source(base: Dict[str, Any]) -> None:
    app = make_app(MOESIF_LOG_BODDY=False, MOESIF_BATCH_SIZE="many")
    with pytest.raises(ConfigurationError) as raised:
        Moesif(app, base)
    message = str(raised.value)
    assert "'LOG_BODDY' (Flask app.config); did you mean 'LOG_BODY'" in message
    assert "BATCH_SIZE (Flask app.config)" in message
    assert "moesif" not in app.extensions


def test_constructor_overrides_app_config(base: Dict[str, Any], collector: Any) -> None:
    app = make_app(
        MOESIF_API_VERSION="from-config",
        MOESIF_APPLICATION_ID="config-app-id",
        MOESIF_BASE_URI="http://127.0.0.1:9",
    )
    moesif = Moesif(app, base, API_VERSION="from-constructor")
    get(app, "/items/1")
    (event,) = deliver(moesif, collector)
    assert event["request"]["api_version"] == "from-constructor"
    assert collector.stored("events")[0].app_id == "flask-test-app"


def test_app_config_fills_what_the_constructor_leaves_out(
    base: Dict[str, Any], collector: Any
) -> None:
    app = make_app(MOESIF_APPLICATION_ID="config-app-id", MOESIF_BASE_URI=base["BASE_URI"])
    moesif = Moesif(app, EVENT_BATCH_TIMEOUT=0.05)
    get(app, "/items/1")
    deliver(moesif, collector)
    assert collector.stored("events")[0].app_id == "config-app-id"


def test_settings_object_with_app_config_is_an_error(base: Dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="MOESIF_API_VERSION would be ignored"):
        Moesif(make_app(MOESIF_API_VERSION="2"), Settings.load(base))


def test_hooks_see_g_request_and_the_app(base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    seen: Dict[str, Any] = {}

    @app.before_request
    def load_account() -> None:
        flask.g.account = "acme"

    def identify_company(hook_app: Any, environ: Dict[str, Any], headers: Dict[str, str]) -> Any:
        seen["app"] = hook_app
        seen["transaction_header"] = headers.get("X-Moesif-Transaction-Id")
        return flask.g.account

    def identify_user(hook_app: Any, environ: Dict[str, Any], headers: Dict[str, str]) -> Any:
        return flask.request.args["as"]

    moesif = Moesif(
        app,
        base,
        IDENTIFY_COMPANY=identify_company,
        IDENTIFY_USER=identify_user,
        GET_METADATA=route_hook,
    )
    reply = get(app, "/items/3?as=ada")
    (event,) = deliver(moesif, collector)
    assert event["company_id"] == "acme" and event["user_id"] == "ada"
    assert event["metadata"] == {"route": "/items/<item_id>", "path": "/items/3"}
    assert seen["app"] is app
    assert seen["transaction_header"] == reply.headers["X-Moesif-Transaction-Id"]


def test_skip_gets_the_app_and_environ(base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    skipped: List[Any] = []

    def skip(hook_app: Any, environ: Dict[str, Any]) -> bool:
        skipped.append(hook_app)
        return bool(environ["PATH_INFO"] == "/items/skip")

    moesif = Moesif(app, base, SKIP=skip)
    assert get(app, "/items/skip").status_code == 200
    get(app, "/items/kept")
    (event,) = deliver(moesif, collector)
    assert event["request"]["uri"].endswith("/items/kept")
    assert skipped == [app, app] and moesif.stats()["skipped"] == 1


def login_app(base: Dict[str, Any], **settings: Any) -> Any:
    flask_login = pytest.importorskip("flask_login")
    app = make_app(SECRET_KEY="test")

    class User(flask_login.UserMixin):  # type: ignore[misc, name-defined]
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    manager = flask_login.LoginManager(app)

    @manager.request_loader
    def load_from_header(request: Any) -> Any:
        name = request.headers.get("X-User")
        return User(name) if name else None

    Moesif(app, base, **settings)
    return app


def test_flask_login_user_is_the_framework_user(base: Dict[str, Any], collector: Any) -> None:
    app = login_app(base)
    get(app, "/items/1", headers={"X-User": "grace"})
    get(app, "/items/2")  # anonymous: no user
    events = deliver(app.extensions["moesif"], collector, 2)
    users = {e["request"]["uri"][-1]: e["user_id"] for e in events}
    assert users == {"1": "grace", "2": None}


def test_identify_user_hook_wins_over_flask_login(base: Dict[str, Any], collector: Any) -> None:
    app = login_app(base, IDENTIFY_USER=lambda *args: "from-hook")
    get(app, "/items/1", headers={"X-User": "grace"})
    (event,) = deliver(app.extensions["moesif"], collector)
    assert event["user_id"] == "from-hook"


def test_flask_login_loader_that_raises_never_breaks_the_request(
    base: Dict[str, Any], collector: Any
) -> None:
    app = login_app(base)

    @app.login_manager.request_loader
    def broken(request: Any) -> Any:
        if request.path.endswith("/boom"):
            raise LookupError("user store down")
        return None

    assert get(app, "/items/boom").status_code == 200
    (event,) = deliver(app.extensions["moesif"], collector)
    assert event["user_id"] is None and event["response"]["status"] == 200
    assert app.extensions["moesif"].stats()["hook_errors"] == 1


def test_stream_with_context_passes_through(base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    produced: List[str] = []
    hook_paths: List[str] = []

    @app.get("/feed")
    def feed() -> Any:
        def lines() -> Iterator[str]:
            for n in range(3):
                produced.append(str(n))
                # The request context is alive while the body is produced.
                yield f"{flask.request.args['topic']}-{n}\n"

        return flask.Response(flask.stream_with_context(lines()), mimetype="text/plain")

    def metadata(hook_app: Any, environ: Dict[str, Any]) -> Any:
        hook_paths.append(flask.request.path)
        return None

    moesif = Moesif(app, base, GET_METADATA=metadata)
    response = app.test_client().get("/feed?topic=news", buffered=False)
    chunks = iter(response.response)
    assert next(chunks) == b"news-0\n"
    assert len(produced) == 1  # the rest is not produced before the client asks
    rest = b"".join(chunks)
    response.close()
    assert rest == b"news-1\nnews-2\n"
    (event,) = deliver(moesif, collector)
    assert base64.b64decode(event["response"]["body"]) == b"news-0\nnews-1\nnews-2\n"
    assert hook_paths == ["/feed"]


def test_generator_response_is_finished_at_the_last_chunk(
    base: Dict[str, Any], collector: Any
) -> None:
    app = make_app()

    @app.get("/numbers")
    def numbers() -> Any:
        return flask.Response((f"{n}\n" for n in range(1000)), mimetype="text/plain")

    moesif = Moesif(app, base)
    response = get(app, "/numbers")
    assert response.data.count(b"\n") == 1000
    (event,) = deliver(moesif, collector)
    assert event["response"]["status"] == 200
    assert event["response"]["time"] >= event["request"]["time"]


def test_propagated_exception_is_a_500_event(base: Dict[str, Any], collector: Any) -> None:
    app = make_app(TESTING=True)  # Flask re-raises into the test client

    @app.get("/fail")
    def fail() -> Any:
        raise KeyError("missing")

    moesif = Moesif(app, base, GET_METADATA=route_hook)
    with pytest.raises(KeyError):
        get(app, "/fail")
    (event,) = deliver(moesif, collector)
    assert event["response"]["status"] == 500
    assert event["metadata"] == {"route": "/fail", "path": "/fail"}


def test_unhandled_exception_says_500_whatever_the_error_page(
    base: Dict[str, Any], collector: Any
) -> None:
    app = make_app()

    @app.get("/fail")
    def fail() -> Any:
        raise RuntimeError("bug")

    @app.get("/handled")
    def handled() -> Any:
        raise ValueError("bad input")

    @app.errorhandler(ValueError)
    def bad_request(error: Exception) -> Any:
        return {"error": str(error)}, 400

    @app.errorhandler(500)
    def friendly_error_page(error: Exception) -> Any:
        return "sorry", 200  # a real app bug seen in the wild: the failure answers 200

    moesif = Moesif(app, base)
    assert get(app, "/fail").status_code == 200
    assert get(app, "/handled").status_code == 400
    events = deliver(moesif, collector, 2)
    statuses = {e["request"]["uri"].rsplit("/", 1)[1]: e["response"]["status"] for e in events}
    # got_request_exception tells the unhandled failure from the handled one.
    assert statuses == {"fail": 500, "handled": 400}


def test_not_found_has_no_route(base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    moesif = Moesif(app, base, GET_METADATA=route_hook)
    assert get(app, "/nowhere").status_code == 404
    (event,) = deliver(moesif, collector)
    assert event["response"]["status"] == 404
    assert event["metadata"] == {"route": None, "path": "/nowhere"}


def test_disabled_leaves_the_app_untouched(base: Dict[str, Any], collector: Any) -> None:
    app = make_app()
    wsgi_app = app.wsgi_app
    moesif = Moesif(app, {"ENABLED": False})
    assert app.wsgi_app == wsgi_app and not app.teardown_request_funcs
    reply = get(app, "/items/1")
    assert "X-Moesif-Transaction-Id" not in reply.headers
    assert moesif.flush(timeout=1) and moesif.stats() == {}
    assert app.extensions["moesif"].enabled is False
    assert collector.event_count() == 0


def test_init_app_twice_on_one_app_is_refused(base: Dict[str, Any]) -> None:
    app = make_app()
    moesif = Moesif(app, base)
    with pytest.raises(RuntimeError, match="already set up"):
        moesif.init_app(app)


def test_init_app_after_the_first_request_changes_nothing(base: Dict[str, Any]) -> None:
    app = make_app()
    get(app, "/items/1")
    wsgi_app = app.wsgi_app
    with pytest.raises(AssertionError, match="teardown_request"):
        Moesif(app, base)
    assert app.wsgi_app == wsgi_app and "moesif" not in app.extensions


def test_flush_waits_for_every_app(base: Dict[str, Any], collector: Any) -> None:
    moesif = Moesif(settings=dict(base, EVENT_BATCH_TIMEOUT=30))
    apps = [make_app(f"app{n}") for n in range(3)]
    for app in apps:
        moesif.init_app(app)
        get(app, "/items/1")
    assert collector.event_count() == 0  # the batch timeout has not passed
    assert moesif.flush(timeout=10)
    assert collector.event_count() == 3
    assert moesif.shutdown(timeout=2)


def test_example_app_under_gunicorn(collector: Any) -> None:
    requests = pytest.importorskip("requests")
    env = {
        "MOESIF_APPLICATION_ID": "example-app",
        "MOESIF_BASE_URI": collector.url,
        "MOESIF_EVENT_BATCH_TIMEOUT": "0.1",
    }
    calls: List[Callable[[str], Any]] = [
        lambda url: requests.get(f"{url}/health"),
        lambda url: requests.get(f"{url}/items", headers={"X-Api-Key": "key-ada"}),
        lambda url: requests.post(
            f"{url}/items", json={"name": "bolt", "qty": 3}, headers={"X-Api-Key": "key-grace"}
        ),
        lambda url: requests.get(f"{url}/items/1", headers={"X-Api-Key": "key-grace"}),
        lambda url: requests.get(f"{url}/items/99", headers={"X-Api-Key": "key-ada"}),
        lambda url: requests.get(f"{url}/items"),
    ]
    rounds = 5
    with serve("gunicorn", "app:app", env, "--workers", "2", cwd=EXAMPLE_DIR) as served:
        replies = [call(served.url) for _ in range(rounds) for call in calls]
        events = collector.wait_for_events(len(replies), timeout=15)
    assert [r.status_code for r in replies[: len(calls)]] == [200, 200, 201, 200, 404, 401]
    assert len(events) == len(replies)
    by_id = {e["transaction_id"]: e for e in events}
    for reply in replies:
        event = by_id[reply.headers["X-Moesif-Transaction-Id"]]
        assert uuid.UUID(event["transaction_id"])
        assert event["response"]["status"] == reply.status_code
        assert event["request"]["uri"] == reply.url
    posts = [e for e in events if e["request"]["verb"] == "POST"]
    assert len(posts) == rounds
    assert all(e["request"]["body"] == {"name": "bolt", "qty": 3} for e in posts)
    assert all(e["user_id"] == "grace" and e["company_id"] == "cobol-inc" for e in posts)
    anonymous = [e for e in events if e["response"]["status"] == 401]
    assert len(anonymous) == rounds and all(e["user_id"] is None for e in anonymous)
    assert {item.app_id for item in collector.stored("events")} == {"example-app"}
