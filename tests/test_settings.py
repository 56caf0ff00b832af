from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import logging
import os.path
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import pytest

from moesif_integrations.core.config import schema as settings_module
from moesif_integrations.core.config.schema import (
    OPTIONS,
    ConfigurationError,
    OptionKind,
    Settings,
    SettingsLayer,
)

APP_ID = "eyJhcHAiOiIxOTg6NzQ0IiwidmVyIjoiMi4xIn0.secret-part"
ROOT = Path(__file__).resolve().parent.parent


def load(
    settings: Optional[Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
    layers: Sequence[SettingsLayer] = (),
) -> Settings:
    """Settings.load isolated from the real environment of the test run."""
    return Settings.load(settings, environ=environ or {}, layers=layers)


def problem(settings: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load(settings, environ)
    return str(caught.value)


def skip_health(app: object, environ: Dict[str, Any]) -> bool:
    return environ.get("PATH_INFO") == "/health"


@pytest.fixture
def hooks_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real importable module with hooks, for dotted names."""
    (tmp_path / "settings_test_hooks.py").write_text(
        "def skip(app, environ):\n"
        "    return True\n"
        "class Hooks:\n"
        "    @staticmethod\n"
        "    def user(app, environ, headers):\n"
        "        return 'u1'\n"
        "NOT_CALLABLE = 42\n"
    )
    (tmp_path / "settings_test_broken.py").write_text("import settings_test_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "settings_test_hooks"


# --- the schema ------------------------------------------------------------------------------


def test_every_field_is_an_option_with_its_upper_case_key_and_env_var() -> None:
    names = [f.name for f in dataclasses.fields(Settings)]
    assert [spec.field_name for spec in OPTIONS] == names
    for spec in OPTIONS:
        assert spec.key == spec.field_name.upper()
        assert spec.env_var == "MOESIF_" + spec.key
        assert spec.description and "\n" not in spec.description
    kinds = {spec.key: spec.kind for spec in OPTIONS}
    assert kinds["LOG_BODY"] is OptionKind.BOOL
    assert kinds["BASE_URI"] is OptionKind.URL
    assert kinds["SKIP"] is OptionKind.HOOK
    assert kinds["API_VERSION"] is OptionKind.OPTIONAL_STR
    assert kinds["TRUSTED_PROXIES"] is OptionKind.NETWORK_LIST
    assert kinds["EVENT_BATCH_TIMEOUT"] is OptionKind.FLOAT
    assert {spec.key: spec.aliases for spec in OPTIONS if spec.aliases} == {
        "BASE_URI": ("LOCAL_MOESIF_BASEURL",)
    }


def test_defaults() -> None:
    settings = load({"APPLICATION_ID": APP_ID})
    assert settings.application_id == APP_ID
    assert settings.base_uri == "https://api.moesif.net"
    assert settings.debug is False
    assert settings.log_body is True
    assert settings.api_version is None
    assert settings.skip is None and settings.mask_event_model is None
    assert settings.authorization_header_name == ("authorization",)
    assert settings.authorization_user_id_field == "sub"
    assert settings.event_queue_size == 10000
    assert settings.event_worker_count == 2
    assert settings.batch_size == 100
    assert settings.event_batch_timeout == 1.0
    assert settings.request_body_masks == () and settings.response_header_masks == ()
    assert settings.request_max_body_size == settings.response_max_body_size == 100000
    assert settings.trusted_proxies == tuple(
        ipaddress.ip_network(cidr)
        for cidr in (
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        )
    )
    assert settings.mask_sensitive_headers is True
    assert settings.event_queue_max_bytes == 50_000_000
    assert settings.batch_max_bytes == 5_000_000
    assert (settings.connect_timeout, settings.read_timeout) == (5.0, 15.0)
    assert (settings.max_retries, settings.retry_backoff, settings.retry_max_delay) == (4, 0.5, 30)
    assert settings.gzip_level == 1
    assert settings.config_refresh_interval == 300.0
    assert settings.enabled is True


def test_load_reads_os_environ_when_no_environ_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOESIF_APPLICATION_ID", APP_ID)
    monkeypatch.setenv("MOESIF_BATCH_SIZE", "7")
    settings = Settings.load()
    assert (settings.application_id, settings.batch_size) == (APP_ID, 7)


# --- the environment, one kind at a time -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("YES", True), (" on ", True), ("1", True)]
    + [("false", False), ("No", False), ("OFF", False), ("0", False)],
)
def test_env_booleans(text: str, expected: bool) -> None:
    assert load(environ={"MOESIF_APPLICATION_ID": APP_ID, "MOESIF_DEBUG": text}).debug is expected


def test_env_numbers_strings_and_urls() -> None:
    settings = load(
        environ={
            "MOESIF_APPLICATION_ID": f"  {APP_ID}\n",
            "MOESIF_EVENT_QUEUE_SIZE": " 500 ",
            "MOESIF_EVENT_BATCH_TIMEOUT": "2.5",
            "MOESIF_SHUTDOWN_TIMEOUT": "3",
            "MOESIF_API_VERSION": "1.2.3",
            "MOESIF_BASE_URI": "http://localhost:9500/collector/",
            "MOESIF_AUTHORIZATION_USER_ID_FIELD": "uid",
        }
    )
    assert settings.application_id == APP_ID  # text is trimmed: secrets files end in a newline
    assert settings.event_queue_size == 500
    assert settings.event_batch_timeout == 2.5
    assert settings.shutdown_timeout == 3.0 and isinstance(settings.shutdown_timeout, float)
    assert settings.api_version == "1.2.3"
    assert settings.base_uri == "http://localhost:9500/collector"  # paths are appended to it
    assert settings.authorization_user_id_field == "uid"


def test_env_empty_optional_string_means_none() -> None:
    settings = load(environ={"MOESIF_APPLICATION_ID": APP_ID, "MOESIF_API_VERSION": ""})
    assert settings.api_version is None


def test_env_lists_split_on_commas_or_whitespace() -> None:
    settings = load(
        environ={
            "MOESIF_APPLICATION_ID": APP_ID,
            "MOESIF_AUTHORIZATION_HEADER_NAME": "X-Api-Key, Authorization",
            "MOESIF_REQUEST_HEADER_MASKS": "X-Secret  X-Other\nX-Third",
            "MOESIF_REQUEST_BODY_MASKS": "password, first name",
            "MOESIF_TRUSTED_PROXIES": "10.1.2.3/8 2001:db8::1",
        }
    )
    assert settings.authorization_header_name == ("x-api-key", "authorization")
    assert settings.request_header_masks == ("x-secret", "x-other", "x-third")
    # With a comma present, spaces belong to the item: JSON field names may contain them.
    assert settings.request_body_masks == ("password", "first name")
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::1/128"),
    )


def test_env_empty_list_trusts_nobody() -> None:
    settings = load(environ={"MOESIF_APPLICATION_ID": APP_ID, "MOESIF_TRUSTED_PROXIES": ""})
    assert settings.trusted_proxies == ()


def test_env_hooks_are_dotted_names(hooks_module: str) -> None:
    settings = load(
        environ={
            "MOESIF_APPLICATION_ID": APP_ID,
            "MOESIF_SKIP": f"{hooks_module}:skip",
            "MOESIF_IDENTIFY_USER": f"{hooks_module}.Hooks.user",
            "MOESIF_GET_METADATA": "os.path:join",
            "MOESIF_GET_SESSION_TOKEN": "os.path.basename",
        }
    )
    assert settings.skip is not None and settings.skip(None, {}) is True
    assert settings.identify_user is not None and settings.identify_user(None, {}, {}) == "u1"
    assert settings.get_metadata is os.path.join
    assert settings.get_session_token is os.path.basename


def test_unknown_moesif_environment_variables_are_ignored() -> None:
    settings = load(
        environ={
            "MOESIF_APPLICATION_ID": APP_ID,
            "MOESIF_LOG_BDY": "maybe",
            "MOESIF_SOMETHING_ELSE": "x",
            "LOG_BODY": "false",
        }
    )
    assert settings.log_body is True


def test_env_values_that_do_not_parse_name_the_variable() -> None:
    message = problem({"APPLICATION_ID": APP_ID}, {"MOESIF_LOG_BODY": "maybe"})
    assert message == (
        "LOG_BODY (environment variable MOESIF_LOG_BODY): got 'maybe' (str); "
        "expected a boolean (true/false, yes/no, on/off, 1/0)"
    )
    message = problem({"APPLICATION_ID": APP_ID}, {"MOESIF_BATCH_SIZE": "1.5"})
    assert message == (
        "BATCH_SIZE (environment variable MOESIF_BATCH_SIZE): got '1.5' (str); "
        "expected an integer from 1 to 1000"
    )
    message = problem({"APPLICATION_ID": APP_ID}, {"MOESIF_READ_TIMEOUT": "nan"})
    assert "READ_TIMEOUT" in message and "'nan'" in message
    assert "expected a number greater than 0" in message


# --- precedence ------------------------------------------------------------------------------


def test_precedence_defaults_env_layers_dict() -> None:
    environ = {
        "MOESIF_APPLICATION_ID": APP_ID,
        "MOESIF_BATCH_SIZE": "10",
        "MOESIF_EVENT_QUEUE_SIZE": "20",
        "MOESIF_GZIP_LEVEL": "3",
        "MOESIF_MAX_RETRIES": "5",
    }
    first = SettingsLayer("ini file", {"EVENT_QUEUE_SIZE": "21", "GZIP_LEVEL": "4"}, text=True)
    second = SettingsLayer("Flask app.config", {"GZIP_LEVEL": 5, "MAX_RETRIES": 6})
    settings = load({"MAX_RETRIES": 7}, environ, layers=[first, second])
    assert settings.read_timeout == 15.0  # default
    assert settings.batch_size == 10  # environment
    assert settings.event_queue_size == 21  # first layer over the environment
    assert settings.gzip_level == 5  # later layer over earlier
    assert settings.max_retries == 7  # the dict over everything


def test_none_means_not_set_here() -> None:
    settings = load({"APPLICATION_ID": APP_ID, "API_VERSION": None, "BATCH_SIZE": None})
    assert settings.api_version is None and settings.batch_size == 100
    # ...so a value from an earlier source stands.
    settings = load(
        {"APPLICATION_ID": APP_ID, "BATCH_SIZE": None}, environ={"MOESIF_BATCH_SIZE": "9"}
    )
    assert settings.batch_size == 9


def test_typed_values_and_normalisation_in_the_dict() -> None:
    settings = load(
        {
            "APPLICATION_ID": APP_ID,
            "SKIP": skip_health,
            "EVENT_BATCH_TIMEOUT": 2,  # an int is a fine float
            "AUTHORIZATION_HEADER_NAME": "X-Api-Key,Authorization",  # moesifwsgi's form
            "RESPONSE_HEADER_MASKS": ["X-Token", " Set-Cookie "],
            "RESPONSE_BODY_MASKS": ("Password", "token"),
            "TRUSTED_PROXIES": ["192.168.1.0/24", ipaddress.ip_network("::1")],
        }
    )
    assert settings.skip is skip_health
    assert settings.event_batch_timeout == 2.0 and isinstance(settings.event_batch_timeout, float)
    assert settings.authorization_header_name == ("x-api-key", "authorization")
    assert settings.response_header_masks == ("x-token", "set-cookie")
    assert settings.response_body_masks == ("Password", "token")  # body field names keep case
    assert settings.trusted_proxies == (
        ipaddress.ip_network("192.168.1.0/24"),
        ipaddress.ip_network("::1/128"),
    )


def test_text_layer_parses_ini_values(hooks_module: str) -> None:
    layer = SettingsLayer(
        "Pyramid settings",
        {
            "APPLICATION_ID": APP_ID,
            "LOG_BODY": "off",
            "SKIP": f"{hooks_module}:skip",
            "TRUSTED_PROXIES": "\n10.0.0.0/8\n172.16.0.0/12",
            "BATCH_SIZE": 50,  # a text layer may still hold typed values
        },
        text=True,
    )
    settings = load(layers=[layer])
    assert settings.log_body is False
    assert settings.skip is not None and settings.skip(None, {}) is True
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "172.16.0.0/12"]
    assert settings.batch_size == 50


def test_typed_layers_do_not_parse_text() -> None:
    layer = SettingsLayer("Flask app.config", {"APPLICATION_ID": APP_ID, "LOG_BODY": "false"})
    with pytest.raises(ConfigurationError) as caught:
        load(layers=[layer])
    assert str(caught.value) == (
        "LOG_BODY (Flask app.config): got 'false' (str); expected a boolean (true or false)"
    )


# --- errors, each naming key, source, value and expectation ----------------------------------


def test_missing_application_id() -> None:
    expected = (
        "APPLICATION_ID is required: set it in the settings or the MOESIF_APPLICATION_ID "
        "environment variable"
    )
    assert problem({}) == expected
    assert problem({"APPLICATION_ID": "   "}) == expected
    assert problem({"APPLICATION_ID": None}) == expected


def test_enabled_false_requires_nothing() -> None:
    settings = load({"ENABLED": False})
    assert settings.enabled is False and settings.application_id == ""
    assert load(environ={"MOESIF_ENABLED": "false"}).enabled is False


def test_unknown_key_suggests_the_nearest() -> None:
    assert problem({"APPLICATION_ID": APP_ID, "LOG_BDY": True}) == (
        "unknown option 'LOG_BDY' (settings dict); did you mean 'LOG_BODY'?"
    )
    assert problem({"APPLICATION_ID": APP_ID, "log_body": True}) == (
        "unknown option 'log_body' (settings dict); did you mean 'LOG_BODY'?"
    )
    assert problem({"APPLICATION_ID": APP_ID, "COMPLETELY_DIFFERENT": 1}) == (
        "unknown option 'COMPLETELY_DIFFERENT' (settings dict)"
    )


def test_unknown_key_in_a_layer_names_the_layer() -> None:
    layer = SettingsLayer("Pyramid settings", {"BATCH_SIZ": "3"}, text=True)
    with pytest.raises(ConfigurationError) as caught:
        load({"APPLICATION_ID": APP_ID}, layers=[layer])
    assert str(caught.value) == (
        "unknown option 'BATCH_SIZ' (Pyramid settings); did you mean 'BATCH_SIZE'?"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("LOG_BODY", "yes", "got 'yes' (str); expected a boolean (true or false)"),
        ("DEBUG", 1, "got 1 (int); expected a boolean (true or false)"),
        ("BATCH_SIZE", "100", "got '100' (str); expected an integer from 1 to 1000"),
        ("BATCH_SIZE", True, "got True (bool); expected an integer from 1 to 1000"),
        ("EVENT_QUEUE_SIZE", 10.0, "got 10.0 (float); expected an integer from 1 to 1000000"),
        ("READ_TIMEOUT", "15", "got '15' (str); expected a number greater than 0"),
        ("READ_TIMEOUT", False, "got False (bool); expected a number greater than 0"),
        ("AUTHORIZATION_USER_ID_FIELD", 7, "got 7 (int); expected a string"),
        ("API_VERSION", 2, "got 2 (int); expected a string or None"),
        ("BASE_URI", 8080, "got 8080 (int); expected an http or https URL with a host"),
        ("SKIP", "myapp.hooks:skip", "got 'myapp.hooks:skip' (str); expected a callable"),
        ("IDENTIFY_USER", 42, "got 42 (int); expected a callable (a function) or None"),
        ("REQUEST_BODY_MASKS", {"password"}, "got {'password'} (set); expected a list of strings"),
        ("REQUEST_BODY_MASKS", ["a", 1], "got ['a', 1] (list); expected a list of strings"),
        ("REQUEST_HEADER_MASKS", 5, "got 5 (int); expected a list of HTTP header names"),
        (
            "REQUEST_HEADER_MASKS",
            ["X-Ok", "Bad Header: x"],
            "expected a list of HTTP header names (or one comma-separated string); "
            "'Bad Header: x' is not a header name",
        ),
        ("TRUSTED_PROXIES", 10, "got 10 (int); expected a list of IP networks"),
    ],
)
def test_wrong_type_for_each_kind(key: str, value: Any, expected: str) -> None:
    message = problem({"APPLICATION_ID": APP_ID, key: value})
    assert message.startswith(f"{key} (settings dict): ")
    assert expected in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("EVENT_WORKER_COUNT", 0, "got 0 (int); expected an integer from 1 to 16"),
        ("EVENT_WORKER_COUNT", 17, "got 17 (int); expected an integer from 1 to 16"),
        ("BATCH_SIZE", 1001, "got 1001 (int); expected an integer from 1 to 1000"),
        (
            "EVENT_BATCH_TIMEOUT",
            0,
            "got 0 (int); expected a number greater than 0 and at most 3600",
        ),
        (
            "EVENT_BATCH_TIMEOUT",
            3601,
            "got 3601 (int); expected a number greater than 0 and at most",
        ),
        ("CONNECT_TIMEOUT", -1.0, "got -1.0 (float); expected a number greater than 0 and at"),
        ("READ_TIMEOUT", 301, "got 301 (int); expected a number greater than 0 and at most 300"),
        ("SHUTDOWN_TIMEOUT", -0.5, "got -0.5 (float); expected a number from 0 to 600"),
        ("SHUTDOWN_TIMEOUT", 1e9, "got 1000000000.0 (float); expected a number from 0 to 600"),
        ("REQUEST_MAX_BODY_SIZE", -1, "got -1 (int); expected an integer from 0 to 10000000"),
        ("RESPONSE_MAX_BODY_SIZE", 10**10, "expected an integer from 0 to 10000000"),
        ("EVENT_QUEUE_SIZE", 10**7, "expected an integer from 1 to 1000000"),
        ("EVENT_QUEUE_MAX_BYTES", 999_999, "expected an integer from 1000000 to 4000000000"),
        ("EVENT_QUEUE_MAX_BYTES", 10**12, "expected an integer from 1000000 to 4000000000"),
        ("BATCH_MAX_BYTES", 9_999, "expected an integer from 10000 to 100000000"),
        ("MAX_RETRIES", 21, "got 21 (int); expected an integer from 0 to 20"),
        ("GZIP_LEVEL", 10, "got 10 (int); expected an integer from 0 to 9"),
        ("CONFIG_REFRESH_INTERVAL", 9.5, "got 9.5 (float); expected a number from 10 to 86400"),
        ("RETRY_BACKOFF", 600, "expected a number greater than 0 and at most 60"),
        ("RETRY_MAX_DELAY", float("inf"), "got inf (float); expected a number greater than 0"),
        ("RETRY_MAX_DELAY", 86400, "expected a number greater than 0 and at most 3600"),
    ],
)
def test_out_of_range_numbers(key: str, value: Any, expected: str) -> None:
    message = problem({"APPLICATION_ID": APP_ID, key: value})
    assert message.startswith(f"{key} (settings dict): ")
    assert expected in message


def test_range_edges_are_accepted() -> None:
    settings = load(
        {
            "APPLICATION_ID": APP_ID,
            "EVENT_WORKER_COUNT": 16,
            "GZIP_LEVEL": 0,
            "MAX_RETRIES": 0,
            "SHUTDOWN_TIMEOUT": 0,
            "CONFIG_REFRESH_INTERVAL": 10,
            "REQUEST_MAX_BODY_SIZE": 0,
        }
    )
    assert (settings.event_worker_count, settings.gzip_level, settings.max_retries) == (16, 0, 0)
    assert settings.shutdown_timeout == 0.0 and settings.config_refresh_interval == 10.0


@pytest.mark.parametrize(
    "url",
    ["api.moesif.net", "ftp://x", "localhost:9500", "https://", "https://h/?q=1", "http://h:no"],
)
def test_base_uri_must_be_http_with_a_host(url: str) -> None:
    message = problem({"APPLICATION_ID": APP_ID, "BASE_URI": url})
    assert message.startswith(f"BASE_URI (settings dict): got {url!r} (str); expected an http or ")
    assert "https://api.moesif.net" in message


def test_non_callable_hook() -> None:
    message = problem({"APPLICATION_ID": APP_ID, "MASK_EVENT_MODEL": {"password": None}})
    assert message == (
        "MASK_EVENT_MODEL (settings dict): got {'password': None} (dict); "
        "expected a callable (a function) or None"
    )


def test_bad_cidr() -> None:
    message = problem({"APPLICATION_ID": APP_ID, "TRUSTED_PROXIES": ["10.0.0.0/8", "10.0.0.300"]})
    assert message.startswith(
        "TRUSTED_PROXIES (settings dict): got ['10.0.0.0/8', '10.0.0.300'] (list); "
        "expected a list of IP networks such as 10.0.0.0/8 or ::1/128"
    )
    assert message.endswith("'10.0.0.300' is not one")
    message = problem({"APPLICATION_ID": APP_ID}, {"MOESIF_TRUSTED_PROXIES": "10.0.0.0/33"})
    assert "TRUSTED_PROXIES (environment variable MOESIF_TRUSTED_PROXIES)" in message
    assert "got '10.0.0.0/33' (str)" in message and "'10.0.0.0/33' is not one" in message


@pytest.mark.parametrize(
    ("dotted", "reason"),
    [
        ("settings_test_nowhere:skip", "No module named 'settings_test_nowhere'"),
        ("settings_test_nowhere.skip", "No module named 'settings_test_nowhere'"),
        ("settings_test_hooks:absent", "no attribute 'absent'"),
        ("settings_test_hooks.Hooks.absent", "no attribute 'absent'"),
        ("settings_test_hooks:NOT_CALLABLE", "it names a int, not a callable"),
        # The module exists but its own import fails: that is reported, not skipped over.
        ("settings_test_broken.hook", "No module named 'settings_test_missing_dependency'"),
        ("justaname", "names no module and attribute"),
    ],
)
def test_bad_dotted_name(hooks_module: str, dotted: str, reason: str) -> None:
    message = problem({"APPLICATION_ID": APP_ID}, {"MOESIF_SKIP": dotted})
    assert message.startswith(
        f"SKIP (environment variable MOESIF_SKIP): got {dotted!r} (str); "
        "expected the dotted name of a callable, such as package.module:function"
    )
    assert reason in message


def test_all_problems_are_reported_at_once() -> None:
    layer = SettingsLayer("Pyramid settings", {"GZIP_LEVEL": "fast"}, text=True)
    with pytest.raises(ConfigurationError) as caught:
        load(
            {"LOG_BODY": "yes", "BATCH_SZE": 5, "BASE_URI": "api.moesif.net"},
            {"MOESIF_DEBUG": "verbose"},
            layers=[layer],
        )
    error = caught.value
    assert isinstance(error, ValueError)
    lines = str(error).splitlines()
    assert lines[0] == "6 problems in the Moesif settings:"
    assert [line.strip().split(" ")[0] for line in lines[1:]] == [
        "DEBUG",
        "GZIP_LEVEL",
        "LOG_BODY",
        "unknown",
        "BASE_URI",
        "APPLICATION_ID",
    ]
    assert len(error.problems) == 6
    assert "did you mean 'BATCH_SIZE'?" in error.problems[3]


def test_a_bad_application_id_is_not_also_reported_missing() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load({"APPLICATION_ID": 12345})
    assert caught.value.problems == (
        "APPLICATION_ID (settings dict): got <hidden> (int); expected a string",
    )


def test_error_messages_do_not_show_the_application_id() -> None:
    message = problem({"APPLICATION_ID": ["not", APP_ID]})
    assert APP_ID not in message and "secret-part" not in message


def test_settings_must_be_a_mapping() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load([("APPLICATION_ID", APP_ID)])  # type: ignore[arg-type]
    assert caught.value.problems[0] == (
        "settings dict: got a list; expected a mapping of option names to values"
    )
    assert APP_ID not in str(caught.value)  # the values could hold the credential


# --- the deprecated alias --------------------------------------------------------------------


def test_local_moesif_baseurl_is_a_deprecated_alias(caplog: pytest.LogCaptureFixture) -> None:
    settings_module._deprecations.reset()
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        first = load({"APPLICATION_ID": APP_ID, "LOCAL_MOESIF_BASEURL": "http://127.0.0.1:9500"})
        second = load({"APPLICATION_ID": APP_ID, "LOCAL_MOESIF_BASEURL": "http://127.0.0.1:9600"})
    assert first.base_uri == "http://127.0.0.1:9500"
    assert second.base_uri == "http://127.0.0.1:9600"
    warnings = [r.getMessage() for r in caplog.records if r.name == "moesif_integrations"]
    assert warnings == ["LOCAL_MOESIF_BASEURL is deprecated: use BASE_URI instead"]


def test_base_uri_wins_over_the_alias() -> None:
    settings = load(
        {
            "APPLICATION_ID": APP_ID,
            "LOCAL_MOESIF_BASEURL": "http://127.0.0.1:9500",
            "BASE_URI": "https://proxy.example.com/moesif",
        }
    )
    assert settings.base_uri == "https://proxy.example.com/moesif"


def test_the_alias_is_validated_like_base_uri() -> None:
    message = problem({"APPLICATION_ID": APP_ID, "LOCAL_MOESIF_BASEURL": "localhost:9500"})
    assert message.startswith("BASE_URI (settings dict): got 'localhost:9500' (str); expected")


# --- repr, construction, copies, logging -----------------------------------------------------


def test_repr_hides_the_application_id_and_hook_internals() -> None:
    secret_state = "closure-secret-value"

    def identify(app: object, environ: object, headers: object) -> str:
        return secret_state

    settings = load(
        {"APPLICATION_ID": APP_ID, "IDENTIFY_USER": identify, "BATCH_SIZE": 5, "SKIP": skip_health}
    )
    text = repr(settings)
    assert text.startswith("Settings(application_id='eyJh…', ")
    assert APP_ID[4:12] not in text and secret_state not in text
    assert "batch_size=5" in text
    assert f"skip=<hook {__name__}.skip_health>" in text
    assert "identify_user=<hook " in text and ".identify>" in text
    assert "log_body" not in text  # defaults are left out


def test_repr_of_a_short_application_id_shows_nothing_of_it() -> None:
    assert "application_id='…'" in repr(load({"APPLICATION_ID": "abcdefg"}))


def test_direct_construction_and_replace_are_validated_and_normalised() -> None:
    settings = Settings(application_id=APP_ID, request_header_masks=["X-A"])  # type: ignore[arg-type]
    assert settings.request_header_masks == ("x-a",)
    with pytest.raises(ConfigurationError) as caught:
        dataclasses.replace(settings, batch_size=0)
    assert str(caught.value) == (
        "BATCH_SIZE (Settings arguments): got 0 (int); expected an integer from 1 to 1000"
    )
    assert settings.replace(batch_size=3).batch_size == 3
    with pytest.raises(ConfigurationError, match="^APPLICATION_ID is required"):
        Settings()


def test_settings_are_frozen() -> None:
    settings = load({"APPLICATION_ID": APP_ID})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 3  # type: ignore[misc]


def test_merged_applies_upper_case_keys_on_top() -> None:
    base = load({"APPLICATION_ID": APP_ID, "BATCH_SIZE": 5, "LOG_BODY": False})
    merged = base.merged({"BATCH_SIZE": 6, "API_VERSION": "2"})
    assert (merged.batch_size, merged.api_version, merged.log_body) == (6, "2", False)
    assert base.batch_size == 5
    with pytest.raises(ConfigurationError) as caught:
        base.merged({"BATCH_SIZ": 6}, source="MoesifMiddleware arguments")
    assert str(caught.value) == (
        "unknown option 'BATCH_SIZ' (MoesifMiddleware arguments); did you mean 'BATCH_SIZE'?"
    )


def test_resolve_puts_options_over_the_dict_over_the_layer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOESIF_GZIP_LEVEL", "6")
    monkeypatch.delenv("MOESIF_API_VERSION", raising=False)
    layer = SettingsLayer(
        "Flask app.config", {"BATCH_SIZE": "7", "LOG_BODY": "false", "API_VERSION": "2"}, text=True
    )
    given = {"APPLICATION_ID": APP_ID, "BATCH_SIZE": 5, "API_VERSION": "1"}
    settings = Settings.resolve(given, {"API_VERSION": "3"}, layer)
    assert (settings.batch_size, settings.log_body, settings.api_version) == (5, False, "3")
    assert settings.gzip_level == 6  # the environment under the layer
    assert given == {"APPLICATION_ID": APP_ID, "BATCH_SIZE": 5, "API_VERSION": "1"}
    assert Settings.resolve(None, {"APPLICATION_ID": APP_ID}).api_version is None
    with pytest.raises(ConfigurationError, match=r"BATCH_SIZE \(Flask app.config\)"):
        Settings.resolve(
            {"APPLICATION_ID": APP_ID},
            {},
            SettingsLayer("Flask app.config", {"BATCH_SIZE": "x"}, text=True),
        )


def test_resolve_keeps_a_settings_object_whole() -> None:
    complete = load({"APPLICATION_ID": APP_ID, "BATCH_SIZE": 5})
    assert Settings.resolve(complete, {}) is complete
    assert Settings.resolve(complete, {}, SettingsLayer("Flask app.config", {})) is complete
    assert Settings.resolve(complete, {"BATCH_SIZE": 6}).batch_size == 6
    layer = SettingsLayer.prefixed(
        "Bottle app.config", {"moesif.log_body": "no", "moesif.api_version": "1"}, "moesif."
    )
    with pytest.raises(ConfigurationError) as caught:
        Settings.resolve(complete, {}, layer)
    assert str(caught.value) == (
        "Bottle app.config: moesif.api_version, moesif.log_body would be ignored, since a "
        "Settings object is complete; pass a settings dict to combine them"
    )


def test_a_prefixed_layer_takes_the_framework_keys() -> None:
    config: Dict[Any, Any] = {"moesif.log_body": "no", "other": 1, 7: "x", "moesif.Batch_Size": "3"}
    layer = SettingsLayer.prefixed("Bottle app.config", config, "moesif.", upper=True)
    assert layer.values == {"LOG_BODY": "no", "BATCH_SIZE": "3"}
    assert layer.written_keys == ("moesif.log_body", "moesif.Batch_Size")
    assert layer.text and layer.source == "Bottle app.config"
    kept_case = SettingsLayer.prefixed("Flask app.config", {"MOESIF_log_body": 1}, "MOESIF_")
    assert kept_case.values == {"log_body": 1}


def test_apply_logging_raises_only_the_package_logger() -> None:
    package_logger = logging.getLogger("moesif_integrations")
    root_level = logging.getLogger().level
    saved = package_logger.level
    try:
        package_logger.setLevel(logging.WARNING)
        load({"APPLICATION_ID": APP_ID}).apply_logging()
        assert package_logger.level == logging.WARNING
        load({"APPLICATION_ID": APP_ID, "DEBUG": True}).apply_logging()
        assert package_logger.level == logging.DEBUG
        assert logging.getLogger().level == root_level
    finally:
        package_logger.setLevel(saved)


def test_loading_does_not_change_logging() -> None:
    package_logger = logging.getLogger("moesif_integrations")
    before = package_logger.level
    load({"APPLICATION_ID": APP_ID, "DEBUG": True})
    assert package_logger.level == before


# --- the README table ------------------------------------------------------------------------


def _options_table_module() -> Any:
    spec = importlib.util.spec_from_file_location("options_table", ROOT / "tools/options_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options_table_has_a_row_per_option() -> None:
    table = _options_table_module().render_options_table()
    rows = table.splitlines()
    assert len(rows) == 2 + len(OPTIONS)
    assert all(row.startswith("| `") for row in rows[2:])
    row = next(r for r in rows if r.startswith("| `EVENT_WORKER_COUNT`"))
    assert row.startswith(
        "| `EVENT_WORKER_COUNT` | integer, from 1 to 16 | `2` | `MOESIF_EVENT_WORKER_COUNT` |"
    )
    row = next(r for r in rows if r.startswith("| `BASE_URI`"))
    assert "Deprecated alias: `LOCAL_MOESIF_BASEURL`" in row
    assert "| `APPLICATION_ID` | string | required |" in table


def test_options_table_update_rewrites_between_markers(tmp_path: Path) -> None:
    module = _options_table_module()
    readme = tmp_path / "README.md"
    readme.write_text("# T\n<!-- options:start -->\nSTALE TABLE\n<!-- options:end -->\ntail\n")
    assert module.main(["--update", str(readme)]) == 0
    text = readme.read_text()
    assert "STALE TABLE" not in text and text.endswith("<!-- options:end -->\ntail\n")
    assert module.render_options_table() in text


def test_readme_option_table_is_generated_from_the_schema() -> None:
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not written yet; the table will be checked once it exists")
    match = re.search(
        r"<!-- options:start -->(.*?)<!-- options:end -->", readme.read_text(), re.DOTALL
    )
    assert match, "README.md needs the <!-- options:start --> / <!-- options:end --> markers"
    expected = _options_table_module().render_options_table()
    assert match.group(1).strip() == expected.strip(), (
        "README option table is stale: run python tools/options_table.py --update README.md"
    )
