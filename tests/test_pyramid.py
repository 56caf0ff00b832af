"""The Pyramid adapter's own idioms: settings, tween placement, exception views, the user."""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import textwrap
import uuid
from typing import Any, Callable, Dict, List, Optional

import pytest

pytest.importorskip("pyramid")
webtest = pytest.importorskip("webtest")

from harness import collector_settings, shut_down_after_test  # noqa: E402
from harness_pyramid import pyramid_settings  # noqa: E402
from pyramid.config import Configurator  # noqa: E402
from pyramid.exceptions import ConfigurationError as PyramidConfigurationError  # noqa: E402
from pyramid.httpexceptions import HTTPForbidden, HTTPNotFound  # noqa: E402
from pyramid.paster import get_app  # noqa: E402
from pyramid.response import Response  # noqa: E402
from servers import ROOT_DIR, serve  # noqa: E402
from wsgi_client import call  # noqa: E402

from moesif_integrations.core.config.schema import ConfigurationError  # noqa: E402
from moesif_integrations.pyramid import Moesif, MoesifConfigurationError  # noqa: E402

APP_ID = "pyramid-test-app"
THIS_MODULE = sys.modules[__name__]


def user_from_header(app: Any, environ: Dict[str, Any], response_headers: Any) -> Any:
    return environ.get("HTTP_X_USER")


def ini_app(global_config: Dict[str, str], **settings: str) -> Any:
    """A PasteDeploy entry point (``use = call:test_pyramid:ini_app``)."""
    return build_app(settings)


class ConflictError(Exception):
    pass


class HeaderPolicy:
    """A Pyramid 2 security policy: X-User names the authenticated user."""

    def identity(self, request: Any) -> Optional[str]:
        return request.headers.get("X-User")

    def authenticated_userid(self, request: Any) -> Optional[str]:
        return self.identity(request)

    def permits(self, request: Any, context: Any, permission: str) -> bool:
        return self.identity(request) is not None

    def remember(self, request: Any, userid: str, **kw: Any) -> List[Any]:
        return []

    def forget(self, request: Any, **kw: Any) -> List[Any]:
        return []


def build_app(
    settings: Dict[str, Any],
    *,
    include: bool = True,
    policy: Any = None,
    package: Any = None,
) -> Any:
    """A small API: items, exceptions rendered by exception views, a file, a protected route."""
    config = Configurator(settings=settings, package=package)
    if policy is not None:
        config.set_security_policy(policy)
    if include:
        config.include("moesif_integrations.pyramid")

    def route(name: str, pattern: str, view: Callable[..., Any], **options: Any) -> None:
        config.add_route(name, pattern)
        config.add_view(view, route_name=name, **options)

    def item(request: Any) -> Any:
        return {"id": request.matchdict["id"]}

    def echo(request: Any) -> Any:
        return {"size": len(request.json_body["data"])}

    def ignore_body(request: Any) -> Any:
        return Response(b"ignored", content_type="text/plain")

    def conflict(request: Any) -> Any:
        raise ConflictError()

    def boom(request: Any) -> Any:
        raise ValueError("boom")

    def missing(request: Any) -> Any:
        raise HTTPNotFound(json_body={"error": "no such thing"})

    def forbidden(request: Any) -> Any:
        raise HTTPForbidden()

    def file(request: Any) -> Any:
        response = Response(b"0123456789" * 10, content_type="text/plain")
        response.etag = "v1"
        response.conditional_response = True
        return response

    route("item", "/items/{id}", item, renderer="json")
    route("echo", "/echo", echo, renderer="json")
    route("ignore", "/ignore", ignore_body)
    route("conflict", "/conflict", conflict)
    route("boom", "/boom", boom)
    route("missing", "/missing", missing)
    route("forbidden", "/forbidden", forbidden)
    route("file", "/file", file)
    route("private", "/private", item, renderer="json", permission="read")
    config.add_route("private_item", "/private/{id}")
    config.add_view(item, route_name="private_item", renderer="json", permission="read")

    def conflict_view(exc: Any, request: Any) -> Any:
        request.response.status = 409
        return {"error": "conflict"}

    def value_error_view(exc: Any, request: Any) -> Any:
        request.response.status = 500
        return {"error": str(exc)}

    config.add_exception_view(conflict_view, context=ConflictError, renderer="json")
    config.add_exception_view(value_error_view, context=ValueError, renderer="json")
    return registered_for_shutdown(config.make_wsgi_app())


def options(collector: Any, **extra: Any) -> Dict[str, Any]:
    return pyramid_settings(collector_settings(collector.url, APP_ID, **extra))


def registered_for_shutdown(app: Any) -> Any:
    """The app, its integration (if it has one by then) to be shut down when the test ends."""
    shut_down_after_test(lambda: app.registry.get("moesif"))
    return app


def events_of(app: Any, collector: Any, count: int) -> List[Dict[str, Any]]:
    assert app.registry["moesif"].flush(timeout=10)
    events = collector.wait_for_events(count, timeout=5)
    assert len(events) == count
    return events


def moesif_warnings(caplog: Any) -> List[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "moesif_integrations" and r.levelno == logging.WARNING
    ]


# ---------------------------------------------------------------------------- settings


def test_ini_settings_through_paster(tmp_path: Any, collector: Any) -> None:
    ini = tmp_path / "app.ini"
    ini.write_text(
        textwrap.dedent(
            f"""\
            [app:main]
            use = call:test_pyramid:ini_app
            moesif.application_id = {APP_ID}
            moesif.base_uri = {collector.url}
            moesif.event_batch_timeout = 0.05
            moesif.log_body = off
            moesif.capture_outgoing_requests = f
            moesif.identify_user = test_pyramid:user_from_header
            moesif.request_header_masks =
                X-Secret
                X-Other-Secret
            moesif.batch_size = 20
            """
        )
    )
    app = get_app(str(ini), "main")
    settings = app.registry["moesif"].settings
    assert settings.log_body is False and settings.capture_outgoing_requests is False
    assert settings.event_batch_timeout == 0.05 and settings.batch_size == 20
    assert settings.identify_user is user_from_header
    assert settings.request_header_masks == ("x-secret", "x-other-secret")

    client = webtest.TestApp(app)
    client.get("/items/3", headers={"X-User": "ini-user", "X-Secret": "s3cr3t-value"})
    (event,) = events_of(app, collector, 1)
    assert event["user_id"] == "ini-user"
    assert event["response"].get("body") is None  # LOG_BODY off
    assert "s3cr3t-value" not in json.dumps(event)


def test_settings_may_be_python_objects(collector: Any) -> None:
    app = build_app(
        options(collector, LOG_BODY=False, IDENTIFY_USER=user_from_header, BATCH_SIZE=7)
    )
    settings = app.registry["moesif"].settings
    assert settings.log_body is False and settings.batch_size == 7
    assert settings.identify_user is user_from_header


def test_pyramid_boolean_words(collector: Any) -> None:
    app = build_app(options(collector, DISABLED_TRANSACTION_ID="t", LOG_BODY="N"))
    settings = app.registry["moesif"].settings
    assert settings.disabled_transaction_id is True and settings.log_body is False
    result = call(app, "GET", "/items/1")
    assert result.header("X-Moesif-Transaction-Id") is None
    assert result.header("Content-Length") == str(len(result.body))


def test_relative_dotted_name_is_relative_to_the_app_package(collector: Any) -> None:
    app = build_app(options(collector, IDENTIFY_USER=".user_from_header"), package=THIS_MODULE)
    assert app.registry["moesif"].settings.identify_user is user_from_header


def test_bad_settings_fail_at_include_naming_each_key() -> None:
    settings = {
        "moesif.application_id": "very-secret-application-id",
        "moesif.log_body": "maybe",
        "moesif.lgo_body": "true",
        "moesif.skip": "no_such_module_anywhere:skip",
        "moesif.batch_size": "lots",
    }
    with pytest.raises(MoesifConfigurationError) as raised:
        build_app(settings)
    error = raised.value
    # Pyramid's ConfigurationError and the core's, so that either except clause works.
    assert isinstance(error, PyramidConfigurationError) and isinstance(error, ConfigurationError)
    message = str(error)
    assert "LOG_BODY (Pyramid settings)" in message and "'maybe'" in message
    assert "'moesif.lgo_body'" in message and "did you mean 'moesif.log_body'" in message
    assert "SKIP (Pyramid settings moesif.skip)" in message
    assert "BATCH_SIZE (Pyramid settings)" in message
    assert len(error.problems) == 4
    assert "very-secret-application-id" not in message


def test_application_id_is_required_unless_disabled() -> None:
    with pytest.raises(MoesifConfigurationError, match="APPLICATION_ID is required"):
        build_app({})
    app = build_app({"moesif.enabled": "false"})
    moesif = app.registry["moesif"]
    assert isinstance(moesif, Moesif) and moesif.pipeline is None
    response = webtest.TestApp(app).get("/items/1")
    assert "X-Moesif-Transaction-Id" not in response.headers
    assert moesif.flush(timeout=1) and moesif.stats() == {}


# ---------------------------------------------------------------------------- the tween


def test_explicit_tween_list_without_the_tween_warns_once(collector: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="moesif_integrations")
    settings = options(collector)
    settings["pyramid.tweens"] = "pyramid.tweens.excview_tween_factory"
    app = build_app(settings)
    client = webtest.TestApp(app)
    for index in range(3):
        assert client.get(f"/items/{index}").json == {"id": str(index)}
    (warning,) = moesif_warnings(caplog)
    assert "pyramid.tweens" in warning and "moesif_integrations.pyramid.tween_factory" in warning
    assert app.registry["moesif"].flush(timeout=5)
    assert collector.event_count() == 0


def test_explicit_tween_list_with_the_tween(collector: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="moesif_integrations")
    settings = options(collector)
    settings["pyramid.tweens"] = (
        "moesif_integrations.pyramid.tween_factory\npyramid.tweens.excview_tween_factory"
    )
    app = build_app(settings)
    assert webtest.TestApp(app).get("/conflict", status=409).json == {"error": "conflict"}
    (event,) = events_of(app, collector, 1)
    assert event["response"]["status"] == 409
    assert moesif_warnings(caplog) == []


def test_tween_listed_under_excview_is_reported(collector: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="moesif_integrations")
    settings = options(collector)
    settings["pyramid.tweens"] = (
        "pyramid.tweens.excview_tween_factory\nmoesif_integrations.pyramid.tween_factory"
    )
    build_app(settings)
    (warning,) = moesif_warnings(caplog)
    assert "under pyramid.tweens.excview_tween_factory" in warning


def test_tween_without_the_include_is_a_configuration_error(collector: Any) -> None:
    settings = options(collector)
    settings["pyramid.tweens"] = "moesif_integrations.pyramid.tween_factory"
    with pytest.raises(PyramidConfigurationError, match="config.include"):
        build_app(settings, include=False)


def test_exception_views_keep_their_real_status(collector: Any) -> None:
    app = build_app(options(collector))
    client = webtest.TestApp(app)
    assert client.get("/missing", status=404).json == {"error": "no such thing"}
    assert client.get("/conflict", status=409).json == {"error": "conflict"}
    assert client.get("/boom", status=500).json == {"error": "boom"}
    forbidden = client.get("/forbidden", status=403)
    assert b"403 Forbidden" in forbidden.body  # the default page is still rendered
    assert client.get("/no/such/route", status=404).body
    events = {e["request"]["uri"].rsplit("/", 1)[-1]: e for e in events_of(app, collector, 5)}
    assert events["missing"]["response"]["status"] == 404
    assert events["missing"]["response"]["body"] == {"error": "no such thing"}
    assert events["conflict"]["response"]["status"] == 409
    assert events["boom"]["response"]["status"] == 500
    assert events["boom"]["response"]["body"] == {"error": "boom"}
    assert events["forbidden"]["response"]["status"] == 403
    assert events["route"]["response"]["status"] == 404


def test_responses_are_unchanged_but_for_the_transaction_header(collector: Any) -> None:
    # Called the way a server calls it: WebTest would fill in a missing Content-Length.
    plain = build_app({}, include=False)
    app = build_app(options(collector))
    requests = [
        ("GET", "/items/7", {}),
        ("GET", "/forbidden", {"Accept": "text/html"}),
        ("GET", "/forbidden", {"Accept": "application/json"}),
        ("GET", "/missing", {}),
        ("HEAD", "/items/7", {}),
        ("GET", "/nowhere", {}),
        ("POST", "/echo", {"Content-Type": "application/json"}),
    ]
    for method, path, headers in requests:
        body = b'{"data": "abc"}' if method == "POST" else b""
        expected = call(plain, method, path, body=body, headers=headers)
        got = call(app, method, path, body=body, headers=headers)
        assert got.status == expected.status and got.body == expected.body
        assert uuid.UUID(got.header("X-Moesif-Transaction-Id") or "")
        without = [(k, v) for k, v in got.headers if k != "X-Moesif-Transaction-Id"]
        assert without == expected.headers
    assert events_of(app, collector, len(requests))


class FrozenResponse(Response):  # type: ignore[misc]
    """A response whose app_iter cannot be replaced: the capture must stand aside."""

    @property
    def app_iter(self) -> Any:
        return self._app_iter


def test_a_response_the_tween_cannot_wrap_goes_out_untouched(collector: Any) -> None:
    def frozen_view(request: Any) -> Any:
        return FrozenResponse(b"frozen", content_type="text/plain")

    config = Configurator(settings=options(collector))
    config.include("moesif_integrations.pyramid")
    config.add_route("frozen", "/frozen")
    config.add_view(frozen_view, route_name="frozen")
    app = registered_for_shutdown(config.make_wsgi_app())
    result = call(app, "GET", "/frozen")
    assert result.status_code == 200 and result.body == b"frozen"
    (event,) = events_of(app, collector, 1)
    assert event["response"]["status"] == 200
    assert app.registry["moesif"].stats()["capture_errors"] == 1


def test_conditional_responses_are_left_to_webob(collector: Any) -> None:
    app = build_app(options(collector))
    client = webtest.TestApp(app)
    replies = [
        client.get("/file", status=200),
        client.get("/file", headers={"If-None-Match": '"v1"'}, status=304),
        client.get("/file", headers={"Range": "bytes=10-14"}, status=206),
    ]
    assert [reply.body for reply in replies] == [b"0123456789" * 10, b"", b"01234"]
    by_id = {e["transaction_id"]: e for e in events_of(app, collector, 3)}
    plain, not_modified, partial = (
        by_id[reply.headers["X-Moesif-Transaction-Id"]] for reply in replies
    )
    assert base64.b64decode(plain["response"]["body"]) == b"0123456789" * 10
    # WebOb answered these two when the response was sent: the tween saw the whole file.
    assert not_modified["response"].get("body") is None
    assert partial["response"].get("body") is None


def test_request_bodies_read_by_webob_or_not_at_all(collector: Any) -> None:
    app = build_app(options(collector))
    client = webtest.TestApp(app)
    big = {"data": "y" * 50_000}  # over WebOb's 10 KB limit: it spools to a temporary file
    assert client.post_json("/echo", big).json == {"size": 50_000}
    client.post("/ignore", b'{"unread": true}', content_type="application/json")
    echo, ignored = sorted(events_of(app, collector, 2), key=lambda e: e["request"]["uri"])
    assert echo["request"]["body"] == big
    assert "body" not in ignored["request"]  # the capture reads nothing the app left unread


# ---------------------------------------------------------------------------- identity


def test_authenticated_userid_is_the_user(collector: Any) -> None:
    app = build_app(options(collector), policy=HeaderPolicy())
    client = webtest.TestApp(app)
    client.get("/private/1", headers={"X-User": "policy-user"})
    client.get("/private/2", status=403)
    events = sorted(events_of(app, collector, 2), key=lambda e: e["request"]["uri"])
    assert [e["user_id"] for e in events] == ["policy-user", None]
    assert [e["response"]["status"] for e in events] == [200, 403]


class BrokenPolicy(HeaderPolicy):
    def authenticated_userid(self, request: Any) -> Optional[str]:
        raise LookupError("session store down")

    def permits(self, request: Any, context: Any, permission: str) -> bool:
        return True


def test_a_policy_that_raises_never_breaks_the_request(collector: Any) -> None:
    app = build_app(options(collector), policy=BrokenPolicy())
    assert webtest.TestApp(app).get("/items/5").json == {"id": "5"}
    (event,) = events_of(app, collector, 1)
    assert event["user_id"] is None and event["response"]["status"] == 200
    assert app.registry["moesif"].stats()["hook_errors"] == 1


def test_identify_user_hook_wins_over_the_policy(collector: Any) -> None:
    def identify(app: Any, environ: Dict[str, Any], response_headers: Any) -> str:
        return "hook-user"

    app = build_app(options(collector, IDENTIFY_USER=identify), policy=HeaderPolicy())
    webtest.TestApp(app).get("/private/1", headers={"X-User": "policy-user"})
    (event,) = events_of(app, collector, 1)
    assert event["user_id"] == "hook-user"


def test_authorization_header_when_no_policy_knows_the_user(collector: Any) -> None:
    app = build_app(options(collector))
    webtest.TestApp(app).get("/items/1", headers={"Authorization": "Basic YWRhOnB3"})  # ada:pw
    (event,) = events_of(app, collector, 1)
    assert event["user_id"] == "ada"


def test_hooks_get_the_registry_and_the_pyramid_request(collector: Any) -> None:
    seen: List[Any] = []

    def metadata(app: Any, environ: Dict[str, Any]) -> Dict[str, Any]:
        request = environ["moesif.request"]
        seen.append((app, environ))
        return {"item": request.matchdict["id"], "route": request.matched_route.name}

    app = build_app(options(collector, GET_METADATA=metadata))
    webtest.TestApp(app).get("/items/42")
    (event,) = events_of(app, collector, 1)
    assert event["metadata"] == {"item": "42", "route": "item"}
    ((hook_app, environ),) = seen
    assert hook_app is app.registry
    assert "moesif.request" not in environ  # dropped when the tween is done: no cycle kept


def test_the_route_is_the_matched_pattern(collector: Any) -> None:
    exchanges: List[Any] = []

    def keep_exchange(app: Any, environ: Dict[str, Any]) -> None:
        exchanges.append(environ["moesif.exchange"])  # the request in flight

    app = build_app(options(collector, GET_METADATA=keep_exchange))
    client = webtest.TestApp(app)
    client.get("/items/9")
    client.get("/nowhere", status=404)
    assert [exchange.record.route for exchange in exchanges] == ["/items/{id}", None]
    events_of(app, collector, 2)


# ---------------------------------------------------------------------------- end to end


def test_example_app_under_gunicorn(collector: Any) -> None:
    requests = pytest.importorskip("requests")
    env = {
        "MOESIF_APPLICATION_ID": APP_ID,
        "MOESIF_BASE_URI": collector.url,
        "MOESIF_EVENT_BATCH_TIMEOUT": "0.1",
    }
    example_dir = os.path.join(ROOT_DIR, "examples", "pyramid")
    ada = {"Authorization": "Bearer key-ada"}
    with serve("gunicorn", "app:app", env=env, cwd=example_dir) as served:
        session = requests.Session()
        transaction_ids = []
        statuses = []
        for index in range(10):
            body = {"text": f"note {index}", "password": "hunter2"}
            reply = session.post(f"{served.url}/notes", json=body, headers=ada, timeout=10)
            statuses.append(reply.status_code)
            transaction_ids.append(reply.headers["X-Moesif-Transaction-Id"])
            note_url = f"{served.url}/notes/{reply.json()['id']}"
            reply = session.get(note_url, headers=ada, timeout=10)
            statuses.append(reply.status_code)
            transaction_ids.append(reply.headers["X-Moesif-Transaction-Id"])
        reply = session.get(f"{served.url}/notes/999", headers=ada, timeout=10)
        statuses.append(reply.status_code)
        transaction_ids.append(reply.headers["X-Moesif-Transaction-Id"])
        reply = session.post(f"{served.url}/notes", json={"text": "anonymous"}, timeout=10)
        statuses.append(reply.status_code)
        transaction_ids.append(reply.headers["X-Moesif-Transaction-Id"])
        for _ in range(3):
            reply = session.get(f"{served.url}/health", timeout=10)
            assert reply.text == "ok" and "X-Moesif-Transaction-Id" not in reply.headers
        assert statuses == [201, 200] * 10 + [404, 403]
        events = collector.wait_for_events(len(transaction_ids), timeout=15)
    by_id = {event["transaction_id"]: event for event in events}
    assert sorted(by_id) == sorted(transaction_ids)
    assert not any(e["request"]["uri"].endswith("/health") for e in events)
    keyed = [by_id[tid] for tid in transaction_ids[:21]]
    assert {(e["user_id"], e["company_id"]) for e in keyed} == {("ada", "analytical-engines")}
    anonymous = by_id[transaction_ids[-1]]
    assert anonymous["user_id"] is None and anonymous["response"]["status"] == 403
    posted = by_id[transaction_ids[0]]
    assert posted["request"]["body"]["text"] == "note 0"
    assert "hunter2" not in json.dumps(events)
    assert {e["request"]["api_version"] for e in events} == {"1.0"}
