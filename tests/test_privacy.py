"""What the events give away: credentials masked by default wherever they travel (headers, query
parameters, JSON and form bodies), fingerprints nobody outside the app can check a guess
against, and settings that never leak the application id or the collector's credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
from servers import serve
from test_delivery import run_script
from test_servers import SERVERS, moesif_env, server_params
from wsgi_client import call

from moesif_integrations import MoesifMiddleware
from moesif_integrations.collector import Collector
from moesif_integrations.core.config.schema import ConfigurationError, Settings
from moesif_integrations.core.counters import Counters
from moesif_integrations.core.record import ExchangeRecord
from moesif_integrations.core.wire.event import EventEncoder, fingerprint_key
from moesif_integrations.core.wire.fields import SENSITIVE_FIELDS, field_names, mask_urlencoded

APP_ID = "privacy-app-id-0123456789"
MASKED_IN_URL = "%3Cmasked%3E"


def echo(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"access_token": "resp-secret-1", "Refresh_Token": "resp-secret-2", "ok": true}']


# ------------------------------------------------------------------------------ fingerprints

PASSWORD = "correct horse"
BASIC = "Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode()


def stored_fingerprint(options: Optional[Dict[str, Any]] = None) -> str:
    """The Authorization header of an event built with these options, as the collector gets it."""
    settings = Settings.load({"APPLICATION_ID": APP_ID, **(options or {})}, environ={})
    record = ExchangeRecord()
    record.request_headers = [("HTTP_AUTHORIZATION", BASIC)]
    record.request_headers_cgi = True
    record.response_headers = []
    encoded = EventEncoder(settings, Counters()).encode(record)
    assert encoded is not None
    value: str = json.loads(encoded)["request"]["headers"]["Authorization"]
    return value


def guess_with_the_application_id(guess: str) -> str:
    """What anyone holding the events and the application id (it travels with every batch)
    could compute for a guessed password, if the key came from the application id."""
    key = hashlib.sha256(b"moesif-integrations/header-fingerprint/" + APP_ID.encode()).digest()
    credential = base64.b64encode(f"ann:{guess}".encode()).decode()
    return "Basic <masked:" + hmac.new(key, credential.encode(), "sha256").hexdigest()[:16] + ">"


def test_a_fingerprint_cannot_confirm_a_guessed_password() -> None:
    stored = stored_fingerprint()
    assert stored.startswith("Basic <masked:") and PASSWORD not in stored
    words = ["123456", "password", PASSWORD, "hunter2"]
    assert [word for word in words if guess_with_the_application_id(word) == stored] == []
    # Nor with any key made from what the events or the settings show.
    assert (
        fingerprint_key(Settings(application_id=APP_ID))
        != hashlib.sha256(b"moesif-integrations/header-fingerprint/" + APP_ID.encode()).digest()
    )


def test_the_fingerprint_key_option_keys_fingerprints_alone() -> None:
    keyed = stored_fingerprint({"MASK_FINGERPRINT_KEY": "k" * 32})
    assert keyed == stored_fingerprint({"MASK_FINGERPRINT_KEY": "k" * 32})
    assert keyed != stored_fingerprint({"MASK_FINGERPRINT_KEY": "j" * 32})
    assert keyed != stored_fingerprint()
    other_app = Settings(application_id="another-app-id", mask_fingerprint_key="k" * 32)
    assert fingerprint_key(other_app) == fingerprint_key(
        Settings(application_id=APP_ID, mask_fingerprint_key="k" * 32)
    )
    assert "k" * 8 not in repr(Settings(application_id=APP_ID, mask_fingerprint_key="k" * 32))


FINGERPRINT_SCRIPT = """
    import json
    from test_privacy import stored_fingerprint
    print(json.dumps([stored_fingerprint(), stored_fingerprint({OPTIONS})]))
"""


def test_without_the_option_each_process_has_its_own_key() -> None:
    runs = []
    for _ in range(2):
        script = FINGERPRINT_SCRIPT.replace("{OPTIONS}", '{"MASK_FINGERPRINT_KEY": "shared-key"}')
        done = run_script(script)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    (random_1, keyed_1), (random_2, keyed_2) = runs
    assert random_1 != random_2  # a key of each process
    assert keyed_1 == keyed_2  # the same fingerprints wherever the option is the same


# ---------------------------------------------------------------------- masked by default


CLEAR_SECRETS = {
    "query-1": "q-secret-1",
    "query-2": "q-secret-2",
    "query-3": "q-secret-3",
    "x-authorization": "h-secret-1",
    "x-auth-key": "h-secret-2",
    "x-access-key": "h-secret-3",
    "authentication": "h-secret-4",
    "x-session": "h-secret-5",
    "body-1": "b-secret-1",
    "body-2": "b-secret-2",
    "body-3": "b-secret-3",
    "form-1": "f-secret-1",
    "form-2": "f-secret-2",
}


def readable(events: List[Dict[str, Any]]) -> str:
    """The events as their JSON, followed by their base64 bodies decoded."""
    decoded = [
        base64.b64decode(side["body"]).decode("latin-1")
        for event in events
        for side in (event["request"], event["response"])
        if side.get("transfer_encoding") == "base64"
    ]
    return json.dumps(events) + "\n".join(decoded)


def send_secrets(app: MoesifMiddleware) -> None:
    query = "API_KEY=q-secret-1&x=1&Access_Token=q-secret-2&sig=q-secret-3&page=2"
    headers = {
        "X-Authorization": "Bearer h-secret-1",
        "X-Auth-Key": "h-secret-2",
        "X-Access-Key": "h-secret-3",
        "Authentication": "Token h-secret-4",
        "X-Session": "h-secret-5",
        "Content-Type": "application/json",
    }
    body = {
        "user": "ann",
        "PassWord": "b-secret-1",
        "nested": [{"Client_Secret": "b-secret-2"}, {"refresh_token": "b-secret-3"}],
    }
    call(app, "POST", "/login", json.dumps(body).encode(), headers, query=query)
    form = b"user=ann&passwd=f-secret-1&Client_Secret=f-secret-2&keep=me"
    call(app, "POST", "/form", form, {"Content-Type": "application/x-www-form-urlencoded"})


def test_credentials_are_masked_by_default_everywhere(
    middlewares: Callable[..., MoesifMiddleware], collector: Collector
) -> None:
    app = middlewares(echo, APP_ID)
    send_secrets(app)
    assert app.flush(timeout=10)
    form, login = sorted(collector.wait_for_events(2), key=lambda e: e["request"]["uri"])
    wire = readable([login, form])
    assert [secret for secret in CLEAR_SECRETS.values() if secret in wire] == []
    assert "resp-secret" not in wire
    assert login["request"]["uri"] == (
        f"http://api.example.com/login?API_KEY={MASKED_IN_URL}&x=1"
        f"&Access_Token={MASKED_IN_URL}&sig={MASKED_IN_URL}&page=2"
    )
    headers = login["request"]["headers"]
    assert headers["X-Authorization"].startswith("Bearer <masked:")
    assert headers["Authentication"].startswith("Token <masked:")
    for name in ("X-Auth-Key", "X-Access-Key", "X-Session"):
        assert re.fullmatch(r"<masked:[0-9a-f]{16}>", headers[name]), name
    assert login["request"]["body"] == {
        "user": "ann",
        "PassWord": "<masked>",
        "nested": [{"Client_Secret": "<masked>"}, {"refresh_token": "<masked>"}],
    }
    assert login["response"]["body"] == {
        "access_token": "<masked>",
        "Refresh_Token": "<masked>",
        "ok": True,
    }
    sent_form = base64.b64decode(form["request"]["body"])
    assert sent_form == (
        f"user=ann&passwd={MASKED_IN_URL}&Client_Secret={MASKED_IN_URL}&keep=me".encode()
    )
    assert urllib.parse.parse_qs(sent_form.decode())["passwd"] == ["<masked>"]


def test_the_defaults_can_be_turned_off_and_extended(
    middlewares: Callable[..., MoesifMiddleware], collector: Collector
) -> None:
    app = middlewares(
        echo,
        APP_ID,
        MASK_SENSITIVE_FIELDS=False,
        MASK_SENSITIVE_HEADERS=False,
        FIELD_MASKS=["PAGE", "Keep"],
        REQUEST_BODY_MASKS=["USER"],
    )
    send_secrets(app)
    assert app.flush(timeout=10)
    form, login = sorted(collector.wait_for_events(2), key=lambda e: e["request"]["uri"])
    wire = readable([login, form])
    assert [name for name, secret in CLEAR_SECRETS.items() if secret not in wire] == []
    assert login["request"]["uri"].endswith(f"&page={MASKED_IN_URL}")
    assert login["request"]["body"]["user"] == "<masked>"  # user masks ignore case too
    assert login["request"]["headers"]["X-Auth-Key"] == "h-secret-2"
    sent_form = base64.b64decode(form["request"]["body"])
    # Body masks cover form fields too.
    assert (
        sent_form
        == (
            f"user={MASKED_IN_URL}&passwd=f-secret-1&Client_Secret=f-secret-2&keep={MASKED_IN_URL}"
        ).encode()
    )


def test_the_documented_default_list() -> None:
    for name in ("password", "passwd", "token", "secret", "api_key", "apikey", "access_token"):
        assert name in SENSITIVE_FIELDS
    for name in ("client_secret", "refresh_token", "sig", "signature"):
        assert name in SENSITIVE_FIELDS
    assert all(name == name.lower() for name in SENSITIVE_FIELDS)


# --------------------------------------------------------------------------------- settings


def test_surrounding_whitespace_of_ids_is_stripped() -> None:
    settings = Settings.load(
        {"APPLICATION_ID": f"  {APP_ID}\n", "AUTHORIZATION_USER_ID_FIELD": " uid\t"}, environ={}
    )
    assert settings.application_id == APP_ID
    assert settings.authorization_user_id_field == "uid"
    assert Settings(application_id=APP_ID + "\r\n").application_id == APP_ID
    assert Settings.load(environ={"MOESIF_APPLICATION_ID": APP_ID + "\n"}).application_id == APP_ID


def test_an_id_read_from_a_file_delivers(
    middlewares: Callable[..., MoesifMiddleware], tmp_path: Any
) -> None:
    accepting = Collector(port=0, db_path=":memory:", application_ids=[APP_ID]).start()
    try:
        id_file = tmp_path / "moesif-id"
        id_file.write_text(APP_ID + "\n")
        app = middlewares(echo, id_file.read_text(), BASE_URI=accepting.url)
        call(app)
        assert app.flush(timeout=10)
        assert len(accepting.wait_for_events(1)) == 1
    finally:
        accepting.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("APPLICATION_ID", "eyJhcHAiOiJzZWNyZXQtaWQtMTIzNDUifQ\nX-Injected: 1"),
        ("APPLICATION_ID", "eyJhcHAiOiJzZWNyZXQtaWQtMTIzNDUifQ\x00"),
        ("MASK_FINGERPRINT_KEY", "a-long-fingerprint-key\x7fwith-delete"),
        ("API_VERSION", "1.0\r\n2"),
        ("AUTHORIZATION_USER_ID_FIELD", "s\x1bub"),
        ("BASE_URI", "https://user:pw-secret-9@collector.example.com/\nx"),
    ],
)
def test_control_characters_are_refused_at_start_up(key: str, value: str) -> None:
    settings = {"APPLICATION_ID": APP_ID, key: value}
    with pytest.raises(ConfigurationError) as raised:
        Settings.load(settings, environ={})
    message = str(raised.value)
    assert message.startswith(f"{key} (settings dict): got ")
    assert "expected text without control characters" in message
    assert "found " in message and "at position" in message
    # The value is shown redacted when it is secret.
    assert "secret-id-12345" not in message and "eyJhcHAiOiJzZWNyZXQtaWQtMTIzNDUifQ" not in message
    assert "fingerprint-key" not in message and "pw-secret-9" not in message
    with pytest.raises(ConfigurationError, match=re.escape(key)):
        Settings.load(environ={"MOESIF_APPLICATION_ID": APP_ID, f"MOESIF_{key}": value})


BASE_URI = "https://moesif-user:pw-secret-9@proxy.example.com/moesif"


def test_credentials_in_the_base_uri_are_redacted_everywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings.load(
        {"APPLICATION_ID": APP_ID, "BASE_URI": BASE_URI, "DEBUG": True}, environ={}
    )
    assert settings.base_uri == BASE_URI  # kept for use; never shown
    shown = repr(settings)
    assert "pw-secret-9" not in shown and "moesif-user" not in shown
    assert "https://***@proxy.example.com/moesif" in shown
    with pytest.raises(ConfigurationError) as raised:
        Settings.load({"APPLICATION_ID": APP_ID, "BASE_URI": BASE_URI + "?x=1"}, environ={})
    assert "pw-secret-9" not in str(raised.value) and "***@proxy.example.com" in str(raised.value)
    with caplog.at_level(logging.DEBUG, logger="moesif_integrations"):
        app = MoesifMiddleware(echo, settings)
        try:
            call(app)
        finally:
            app.shutdown(timeout=0.5)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "***@proxy.example.com" in logged
    assert "pw-secret-9" not in logged and APP_ID not in logged


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("EVENT_QUEUE_SIZE", 10**9, "expected an integer from 1 to 1000000"),
        ("REQUEST_MAX_BODY_SIZE", 2**40, "expected an integer from 0 to 10000000"),
        ("BATCH_MAX_BYTES", 10**10, "expected an integer from 10000 to 100000000"),
        ("EVENT_QUEUE_MAX_BYTES", 10**15, "expected an integer from 1000000 to 4000000000"),
        ("READ_TIMEOUT", 1e6, "expected a number greater than 0 and at most 300"),
        ("SHUTDOWN_TIMEOUT", 86400, "expected a number from 0 to 600"),
        ("RETRY_MAX_DELAY", 1e9, "expected a number greater than 0 and at most 3600"),
    ],
)
def test_numbers_have_sane_upper_bounds(key: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.load({"APPLICATION_ID": APP_ID, key: value}, environ={})
    assert str(raised.value).startswith(f"{key} (settings dict): got ")
    assert expected in str(raised.value)


# ------------------------------------------------------------- rejected with no logging set up

REJECTED_SCRIPT = """
    import logging
    from moesif_integrations import MoesifMiddleware
    from wsgi_client import call

    {SETUP}

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    mw = MoesifMiddleware(app, {{"APPLICATION_ID": "a-wrong-application-id", "BASE_URI": "{URL}",
                                 "EVENT_BATCH_TIMEOUT": 0.05, "DELIVERY_PROCESS": {PROCESS}}})
    for _ in range(3):
        call(mw)
        mw.flush(timeout=10)
    print("failed:", mw.stats()["failed"])
"""

TOLD_ONCE = "(shown once on stderr: no logging handler is configured"


def run_rejected(collector: Collector, setup: str = "", process: bool = False) -> str:
    """The stderr of a process whose events the collector all rejects."""
    script = REJECTED_SCRIPT.format(SETUP=setup, URL=collector.url, PROCESS=process)
    done = run_script(script)
    assert done.returncode == 0, done.stderr
    assert "failed: 3" in done.stdout
    return done.stderr


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("process", [False, True], ids=["threads", "delivery-process"])
def test_a_rejected_application_id_is_told_once_without_logging_configured(
    collector: Collector, status: int, process: bool
) -> None:
    collector.fail(status=status)
    stderr = run_rejected(collector, process=process)
    lines = [line for line in stderr.splitlines() if "refused the application id" in line]
    assert lines == [
        f"moesif_integrations ERROR: the collector refused the application id ({status}): "
        f"check APPLICATION_ID; 1 events dropped {TOLD_ONCE} for the 'moesif_integrations' "
        "logger)"
    ], stderr
    assert "a-wrong-application-id" not in stderr and "a-wr" not in stderr
    assert collector.request_count() == 3


def test_configured_logging_gets_the_line_and_stderr_gets_no_second_copy(
    collector: Collector,
) -> None:
    collector.fail(status=401)
    stderr = run_rejected(collector, "logging.basicConfig(format='LOGGED %(message)s')")
    assert TOLD_ONCE not in stderr
    lines = [line for line in stderr.splitlines() if "refused the application id" in line]
    assert lines == [
        "LOGGED the collector refused the application id (401): check APPLICATION_ID; "
        "1 events dropped"
    ], stderr


def test_a_silenced_package_logger_stays_silent(collector: Collector) -> None:
    collector.fail(status=401)
    stderr = run_rejected(collector, "logging.getLogger('moesif_integrations').disabled = True")
    assert "refused" not in stderr, stderr


def test_the_protocol_document_lists_the_default_fields() -> None:
    text = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    bullet = text.split("- **Fields masked by default**", 1)[1].split("\n- ", 1)[0]
    listed = set(re.findall(r"`([^`]+)`", bullet.split("bodies of requests and responses:")[1]))
    assert listed == set(SENSITIVE_FIELDS)


def test_query_and_form_masking_decodes_names_and_keeps_the_rest_as_sent() -> None:
    names = field_names(frozenset({"password", "api key"}))
    text = "a=1&%70assWord=p%20w&api+key=k&api%20KEY=k2&password=&password&b=%zz&=x"
    assert mask_urlencoded(text, names) == (
        f"a=1&%70assWord={MASKED_IN_URL}&api+key={MASKED_IN_URL}&api%20KEY={MASKED_IN_URL}"
        "&password=&password&b=%zz&=x"
    )
    untouched = "a=1&b=2"
    assert mask_urlencoded(untouched, names) is untouched


@pytest.mark.parametrize("name", server_params("gunicorn-sync", "waitress"))
def test_a_server_shows_the_rejection_once(name: str, collector: Collector, tmp_path: Any) -> None:
    collector.fail(status=401)
    server, extra = SERVERS[name]
    env = moesif_env(collector)
    with serve(server, "apps.unlogged:app", env, *extra, log_dir=str(tmp_path)) as served:
        for index in range(3):
            assert served.request("GET", f"/items/{index}").status == 200
            collector.wait_for_requests(index + 1)
        deadline = time.monotonic() + 10
        while "refused" not in served.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the later rejections have been answered: no second line
        served.stop()
    told = [line for line in served.output().splitlines() if "refused the application id" in line]
    assert len(told) == 1, served.output()
    # gunicorn configures its own loggers only, so the package says it on stderr itself;
    # waitress-serve configures the root logger, which shows the line.
    assert (TOLD_ONCE in told[0]) == (server == "gunicorn"), told
    assert "served-app-id" not in served.output()


# ------------------------------------------------------------------------ valid UTF-8 on the wire


@pytest.mark.parametrize("process", [False, True], ids=["threads", "delivery-process"])
def test_a_lone_surrogate_never_costs_its_batch(
    middlewares: Callable[..., MoesifMiddleware],
    collector: Collector,
    json_backend: str,
    process: bool,
) -> None:
    def metadata(app: Any, environ: Dict[str, Any]) -> Dict[str, Any]:
        return {"note": "a\ud800b", "\udc00": 1}

    app = middlewares(echo, APP_ID, GET_METADATA=metadata, DELIVERY_PROCESS=process)
    body = b'{"s": "\\ud800", "pair": "\\ud83d\\ude00"}'
    for index in range(5):
        call(app, "POST", f"/items/{index}", body, {"Content-Type": "application/json"})
    assert app.flush(timeout=20)
    events = collector.wait_for_events(5)
    assert {event["request"]["body"]["s"] for event in events} == {"\ufffd"}
    assert {event["request"]["body"]["pair"] for event in events} == {"\U0001f600"}
    assert events[0]["metadata"] == {"note": "a\ufffdb", "\ufffd": 1}
    assert app.stats()["failed"] == 0
