"""The one configuration schema: every option, its type, default, limits and sources.

``Settings`` is a frozen dataclass whose fields are the options; the user-facing key is the field
name upper-cased (``log_body`` is ``LOG_BODY``, ``MOESIF_LOG_BODY`` in the environment).
``Settings.load`` merges defaults < environment < adapter layers < the settings dict, converts
and validates everything, and reports every problem at once in a ``ConfigurationError``.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import math
import os
import typing
from dataclasses import dataclass, field
from typing import (
    Any,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from ..logs import LogOnce, logger
from .values import (
    Bounds,
    Hook,
    InvalidValueError,
    IPNetwork,
    OptionKind,
    convert,
    describe_given,
    redact,
    redact_url,
)

__all__ = [
    "OPTIONS",
    "ConfigurationError",
    "Hook",
    "IPNetwork",
    "OptionKind",
    "OptionSpec",
    "Settings",
    "SettingsLayer",
    "find_option",
    "option",
]

_T = TypeVar("_T")
_META = "moesif_option"
ENV_PREFIX = "MOESIF_"
DICT_SOURCE = "settings dict"
CONSTRUCTOR_SOURCE = "Settings arguments"

# Deprecated spellings are reported once per process, not once per middleware instance.
_deprecations = LogOnce(interval=math.inf)


class ConfigurationError(ValueError):
    """Settings that cannot work; one line per problem: key, source, value given, expectation."""

    def __init__(self, problems: Union[str, Sequence[str]]) -> None:
        self.problems: Tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            lines = "\n".join(f"  {problem}" for problem in self.problems)
            message = f"{len(self.problems)} problems in the Moesif settings:\n{lines}"
        super().__init__(message)


@dataclass(frozen=True)
class _OptionMeta:
    description: str
    kind: Optional[OptionKind]
    bounds: Bounds
    env: bool
    aliases: Tuple[str, ...]
    required: bool
    secret: bool


def option(
    default: _T,
    description: str,
    *,
    kind: Optional[OptionKind] = None,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    above: Optional[float] = None,
    env: bool = True,
    aliases: Tuple[str, ...] = (),
    required: bool = False,
    secret: bool = False,
) -> _T:
    """A ``Settings`` field with its schema. ``kind`` is needed only where the annotation is not
    enough (URL, hook, lists); ``above`` is an exclusive lower bound; ``required`` means non-empty
    unless ENABLED is false; ``secret`` values never appear in full in messages or repr."""
    meta = _OptionMeta(
        description=description,
        kind=kind,
        bounds=Bounds(minimum=minimum, maximum=maximum, above=above),
        env=env,
        aliases=aliases,
        required=required,
        secret=secret,
    )
    return field(default=default, metadata={_META: meta})


@dataclass(frozen=True)
class OptionSpec:
    """One option as adapters and the README see it."""

    key: str  # LOG_BODY
    field_name: str  # log_body
    kind: OptionKind
    default: Any
    description: str
    env_var: Optional[str]  # MOESIF_LOG_BODY, or None when the environment cannot set it
    aliases: Tuple[str, ...]
    bounds: Bounds
    required: bool
    secret: bool

    def convert(self, value: Any, *, text: bool) -> Any:
        return convert(self.kind, self.bounds, value, text=text)

    def problem(self, source: str, given: Any, error: InvalidValueError) -> str:
        if self.kind is OptionKind.URL and isinstance(given, str):
            given = redact_url(given)  # credentials in a URL are as secret as the id
        return (
            f"{self.key} ({source}): got {describe_given(given, secret=self.secret)}; "
            f"expected {error}"
        )


@dataclass(frozen=True)
class SettingsLayer:
    """Option values from one framework-native place, e.g. Flask's app.config.

    Keys are upper-case option keys; ``text`` means values may be strings to parse (ini files).
    ``written_keys`` are the keys as the place spells them (``MOESIF_LOG_BODY``,
    ``moesif.log_body``), for messages.
    """

    source: str
    values: Mapping[str, Any]
    text: bool = False
    written_keys: Tuple[str, ...] = ()

    @classmethod
    def prefixed(
        cls, source: str, config: Mapping[Any, Any], prefix: str, *, upper: bool = False
    ) -> SettingsLayer:
        """The options among the keys of a framework's ``config`` that start with ``prefix``
        (the key is what follows it, upper-cased with ``upper``), values as text or typed."""
        written = tuple(key for key in config if isinstance(key, str) and key.startswith(prefix))
        values = {
            (key[len(prefix) :].upper() if upper else key[len(prefix) :]): config[key]
            for key in written
        }
        return cls(source, values, text=True, written_keys=written)


_DEFAULT_TRUSTED_PROXIES = tuple(
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


@dataclass(frozen=True, repr=False)
class Settings:
    """Every option of the integration, validated. Build with ``Settings.load``."""

    # Compatible with moesifwsgi 1.10.5.
    application_id: str = option(
        "",
        "Moesif application id (the collector credential). Required unless ENABLED is false.",
        required=True,
        secret=True,
    )
    base_uri: str = option(
        "https://api.moesif.net",
        "Collector base URL: the hosted API, a Moesif secure proxy or a local collector.",
        kind=OptionKind.URL,
        aliases=("LOCAL_MOESIF_BASEURL",),
    )
    debug: bool = option(
        False,
        "Verbose logging on the `moesif_integrations` logger (never logs credentials or bodies).",
    )
    log_body: bool = option(True, "Capture request and response bodies.")
    api_version: Optional[str] = option(None, "API version recorded on every event.")
    skip: Optional[Hook] = option(
        None,
        "`(app, environ) -> bool`: a true result skips the request.",
        kind=OptionKind.HOOK,
    )
    identify_user: Optional[Hook] = option(
        None,
        "`(app, environ, response_headers) -> user id`; "
        "without it the user id is read from the authorization header. "
        "A str, or an int or UUID (recorded as text); anything else is refused with a warning.",
        kind=OptionKind.HOOK,
    )
    identify_company: Optional[Hook] = option(
        None,
        "`(app, environ, response_headers) -> company id`: "
        "a str, or an int or UUID (recorded as text); anything else is refused with a warning.",
        kind=OptionKind.HOOK,
    )
    get_metadata: Optional[Hook] = option(
        None,
        "`(app, environ) -> dict` of custom metadata recorded on the event; anything else, "
        "or a dict that cannot be serialised to JSON, is left out of the event with a warning.",
        kind=OptionKind.HOOK,
    )
    get_session_token: Optional[Hook] = option(
        None,
        "`(app, environ) -> str`: the session or API token recorded on the event.",
        kind=OptionKind.HOOK,
    )
    mask_event_model: Optional[Hook] = option(
        None,
        "`(EventModel) -> EventModel`: edit or remove fields before sending; "
        "if it raises, the event is dropped.",
        kind=OptionKind.HOOK,
    )
    authorization_header_name: Tuple[str, ...] = option(
        ("authorization",),
        "Header(s) holding the token the user id is read from, tried in order.",
        kind=OptionKind.HEADER_LIST,
    )
    authorization_user_id_field: str = option("sub", "JWT claim holding the user id.")
    disabled_transaction_id: bool = option(
        False, "Do not add the `X-Moesif-Transaction-Id` header."
    )
    event_queue_size: int = option(
        10000,
        "Most events waiting to be sent; further events are dropped and counted.",
        minimum=1,
        maximum=1_000_000,
    )
    event_worker_count: int = option(
        2,
        "Sender threads: the first builds and sends the batches, the others help with a "
        "backlog (a slow collector, a retry).",
        minimum=1,
        maximum=16,
    )
    batch_size: int = option(100, "Most events in one batch.", minimum=1, maximum=1000)
    event_batch_timeout: float = option(
        1.0, "Longest an event waits for its batch to fill, in seconds.", above=0, maximum=3600
    )
    capture_outgoing_requests: bool = option(
        False,
        "Also capture the app's own HTTP calls (`requests`, `httpx`, `urllib3`) as events with "
        "direction `Outgoing`, each noting the incoming request it was made for; calls to the "
        "collector are never captured.",
    )
    skip_outgoing: Optional[Hook] = option(
        None, "`(req, res) -> bool`: a true result skips the outgoing call.", kind=OptionKind.HOOK
    )
    identify_user_outgoing: Optional[Hook] = option(
        None, "`(req, res) -> user id` of an outgoing call.", kind=OptionKind.HOOK
    )
    identify_company_outgoing: Optional[Hook] = option(
        None, "`(req, res) -> company id` of an outgoing call.", kind=OptionKind.HOOK
    )
    get_metadata_outgoing: Optional[Hook] = option(
        None, "`(req, res) -> dict` of metadata for an outgoing call.", kind=OptionKind.HOOK
    )
    get_session_token_outgoing: Optional[Hook] = option(
        None, "`(req, res) -> str`: the session token of an outgoing call.", kind=OptionKind.HOOK
    )
    log_body_outgoing: bool = option(
        True, "Capture the bodies of outgoing calls (what the caller reads, up to the body limits)."
    )

    # From moesifdjango.
    request_header_masks: Tuple[str, ...] = option(
        (), "Extra request header names to mask (case-insensitive).", kind=OptionKind.HEADER_LIST
    )
    response_header_masks: Tuple[str, ...] = option(
        (), "Extra response header names to mask (case-insensitive).", kind=OptionKind.HEADER_LIST
    )
    request_body_masks: Tuple[str, ...] = option(
        (),
        "JSON and form field names masked in request bodies, at any depth (case-insensitive).",
        kind=OptionKind.STR_LIST,
    )
    response_body_masks: Tuple[str, ...] = option(
        (),
        "JSON and form field names masked in response bodies, at any depth (case-insensitive).",
        kind=OptionKind.STR_LIST,
    )

    # New in this project.
    request_max_body_size: int = option(
        100000,
        "Largest request body captured, in bytes; a larger one becomes a truncation marker.",
        minimum=0,
        maximum=10_000_000,
    )
    response_max_body_size: int = option(
        100000,
        "Largest response body captured, in bytes; a larger one becomes a truncation marker.",
        minimum=0,
        maximum=10_000_000,
    )
    trusted_proxies: Tuple[IPNetwork, ...] = option(
        _DEFAULT_TRUSTED_PROXIES,
        "Proxies whose `TRUSTED_PROXY_HEADER` is believed; empty trusts nobody.",
        kind=OptionKind.NETWORK_LIST,
    )
    trusted_proxy_header: str = option(
        "x-forwarded-for",
        "The one header the trusted proxies write the client's address to; no other is read. "
        "`Forwarded` is read as RFC 7239 (its `for=` values), any other name as a "
        "comma-separated list of addresses (`X-Forwarded-For`, `X-Real-IP`...).",
        kind=OptionKind.HEADER,
    )
    mask_sensitive_headers: bool = option(
        True,
        "Send `Authorization`, `Cookie`, `Set-Cookie`, API-key and other credential headers "
        '(the default list in docs/protocol.md, "Masking") as a fingerprint.',
    )
    mask_sensitive_fields: bool = option(
        True,
        "Mask the default list of credential fields (`password`, `token`, `api_key`, "
        '`client_secret`...; docs/protocol.md, "Masking") in query parameters and in JSON '
        "and form bodies, without regard to case.",
    )
    field_masks: Tuple[str, ...] = option(
        (),
        "Extra names masked like the default credential fields: query parameters, and JSON "
        "and form fields of request and response bodies (case-insensitive), whatever "
        "`MASK_SENSITIVE_FIELDS` says.",
        kind=OptionKind.STR_LIST,
    )
    mask_fingerprint_key: Optional[str] = option(
        None,
        "Secret key of the fingerprints of masked headers: the same credential gets the same "
        "fingerprint in every process that has this key. Unset, each process draws a random "
        "key, so fingerprints match only within one process. Use a long random string; it "
        "never leaves the app.",
        secret=True,
    )
    event_queue_max_bytes: int = option(
        50_000_000,
        "Bound on the memory of queued events, in bytes.",
        minimum=1_000_000,
        maximum=4_000_000_000,
    )
    batch_max_bytes: int = option(
        5_000_000,
        "Bound on one batch's uncompressed JSON, in bytes.",
        minimum=10_000,
        maximum=100_000_000,
    )
    shutdown_timeout: float = option(
        5.0, "Time the flush at exit may take, in seconds.", minimum=0, maximum=600
    )
    flush_on_sigterm: bool = option(
        True,
        "When nothing but the default action is set for SIGTERM (waitress, a plain Python "
        "server), set a handler that flushes within `SHUTDOWN_TIMEOUT`, then ends the process as "
        "SIGTERM would. A handler the app or the server set (gunicorn, uvicorn) is never "
        "replaced. Set only from the main thread.",
    )
    connect_timeout: float = option(
        5.0, "Connect timeout of each call to the collector, in seconds.", above=0, maximum=300
    )
    read_timeout: float = option(
        15.0,
        "Time one call to the collector may take once connected (sending it and reading the "
        "whole answer), in seconds; a call that takes longer fails and is retried.",
        above=0,
        maximum=300,
    )
    max_retries: int = option(
        4, "Retries of a failed batch (connection error, 429, 5xx).", minimum=0, maximum=20
    )
    retry_backoff: float = option(
        0.5,
        "First retry delay in seconds, doubled on each retry, with jitter.",
        above=0,
        maximum=60,
    )
    retry_max_delay: float = option(
        30.0,
        "Cap on one retry delay in seconds (also caps `Retry-After`).",
        above=0,
        maximum=3600,
    )
    gzip_level: int = option(
        1, "gzip level of event batches; 0 sends them uncompressed.", minimum=0, maximum=9
    )
    config_refresh_interval: float = option(
        300.0,
        "Seconds between fetches of the app config and governance rules; a change the collector "
        "signals is fetched at once.",
        minimum=10,
        maximum=86400,
    )
    enabled: bool = option(
        True, "False makes every adapter a pass-through: nothing captured, nothing sent."
    )
    delivery_process: bool = option(
        False,
        "Build and send events in a delivery process of their own (one per app process, "
        "started on first use), off the app's GIL and CPU.",
    )

    def __post_init__(self) -> None:
        # Direct construction and dataclasses.replace() get the same checks as load().
        problems = _Problems()
        for spec in OPTIONS:
            raw = getattr(self, spec.field_name)
            try:
                value = spec.convert(raw, text=False)
            except InvalidValueError as error:
                problems.add(spec.key, spec.problem(CONSTRUCTOR_SOURCE, raw, error))
                continue
            if value is not raw:
                object.__setattr__(self, spec.field_name, value)
        _check_required(
            {spec.field_name: getattr(self, spec.field_name) for spec in OPTIONS}, problems
        )
        problems.raise_if_any()

    @classmethod
    def load(
        cls,
        settings: Optional[Mapping[str, Any]] = None,
        *,
        environ: Optional[Mapping[str, str]] = None,
        layers: Sequence[SettingsLayer] = (),
    ) -> Settings:
        """Merges defaults < ``MOESIF_<KEY>`` environment variables < ``layers`` in order <
        ``settings`` (moesifwsgi's dict); raises ConfigurationError listing every problem.

        A None value means "not set here": the option keeps what earlier sources gave it.
        """
        problems = _Problems()
        values = _read_environment(os.environ if environ is None else environ, problems)
        sources = list(layers)
        if settings is not None:
            sources.append(SettingsLayer(DICT_SOURCE, settings, text=False))
        for layer in sources:
            values.update(_read_layer(layer, problems))
        _check_required(values, problems)
        problems.raise_if_any()
        return cls(**values)

    def merged(
        self, settings: Mapping[str, Any], *, source: str = DICT_SOURCE, text: bool = False
    ) -> Settings:
        """A copy with ``settings`` (upper-case keys, as in the settings dict) applied on top,
        checked like ``load``."""
        problems = _Problems()
        values = {spec.field_name: getattr(self, spec.field_name) for spec in OPTIONS}
        values.update(_read_layer(SettingsLayer(source, settings, text), problems))
        _check_required(values, problems)
        problems.raise_if_any()
        return type(self)(**values)

    @classmethod
    def resolve(
        cls,
        given: Union[Mapping[str, Any], Settings, None],
        options: Mapping[str, Any],
        layer: Optional[SettingsLayer] = None,
    ) -> Settings:
        """The settings an adapter runs with: ``given`` (moesifwsgi's settings dict, or a
        complete Settings object) with the keyword ``options`` on top.

        A dict (or None) is loaded over ``layer`` (the framework's own configuration, when it
        has one), the environment and the defaults. A Settings object is complete, so a
        ``layer`` holding anything beside it is an error rather than silently ignored.
        """
        if isinstance(given, Settings):
            if layer is not None and layer.values:
                written = ", ".join(sorted(layer.written_keys or layer.values))
                raise ConfigurationError(
                    f"{layer.source}: {written} would be ignored, since a Settings object is "
                    "complete; pass a settings dict to combine them"
                )
            return given.merged(options) if options else given
        explicit = dict(given or {})
        explicit.update(options)
        return cls.load(explicit, layers=() if layer is None else (layer,))

    def replace(self, **changes: Any) -> Settings:
        """A copy with fields (lower-case names) changed, validated like the constructor."""
        return dataclasses.replace(self, **changes)

    def apply_logging(self) -> None:
        """DEBUG raises the package logger to DEBUG; the host's other loggers are left alone."""
        if self.debug and logger.getEffectiveLevel() > logging.DEBUG:
            logger.setLevel(logging.DEBUG)

    def __repr__(self) -> str:
        # The application id (cut to a prefix) and whatever differs from the defaults.
        shown = []
        for spec in OPTIONS:
            value = getattr(self, spec.field_name)
            if spec.secret:
                if value or spec.required:
                    shown.append(f"{spec.field_name}={redact(value or '')!r}")
            elif value != spec.default:
                shown.append(f"{spec.field_name}={_show(spec, value)}")
        return f"Settings({', '.join(shown)})"


def _show(spec: OptionSpec, value: Any) -> str:
    if spec.kind is OptionKind.HOOK and value is not None:
        # The qualified name identifies a hook; its repr could expose captured state.
        owner = value if hasattr(value, "__qualname__") else type(value)
        module = getattr(owner, "__module__", None)
        name = getattr(owner, "__qualname__", type(value).__name__)
        return f"<hook {module}.{name}>" if module else f"<hook {name}>"
    if spec.kind is OptionKind.NETWORK_LIST:
        return repr(tuple(str(network) for network in value))
    if spec.kind is OptionKind.URL:
        return repr(redact_url(value))
    return repr(value)


class _Problems:
    """Problem lines in the order found, and the keys they concern."""

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.keys: Set[str] = set()

    def add(self, key: Optional[str], line: str) -> None:
        if key is not None:
            self.keys.add(key)
        self.lines.append(line)

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigurationError(self.lines)


def _read_environment(environ: Mapping[str, str], problems: _Problems) -> Dict[str, Any]:
    # Only known names are read: the environment is shared with other tools, so unknown
    # MOESIF_* variables are none of our business.
    values: Dict[str, Any] = {}
    for spec in OPTIONS:
        if spec.env_var is None or spec.env_var not in environ:
            continue
        raw = environ[spec.env_var]
        try:
            values[spec.field_name] = spec.convert(raw, text=True)
        except InvalidValueError as error:
            problems.add(spec.key, spec.problem(f"environment variable {spec.env_var}", raw, error))
    return values


def _read_layer(layer: SettingsLayer, problems: _Problems) -> Dict[str, Any]:
    if not isinstance(layer.values, Mapping):
        problems.add(
            None,
            # Only the type: the values could hold the application id.
            f"{layer.source}: got a {type(layer.values).__name__}; "
            "expected a mapping of option names to values",
        )
        return {}
    values: Dict[str, Any] = {}
    for key, raw in layer.values.items():
        spec = _BY_KEY.get(key) if isinstance(key, str) else None
        is_alias = False
        if spec is None and isinstance(key, str) and key in _BY_ALIAS:
            spec, is_alias = _BY_ALIAS[key], True
        if spec is None:
            problems.add(None, _unknown_key(key, layer.source))
            continue
        if raw is None:
            continue  # moesifwsgi users write "API_VERSION": None for "not set"
        if is_alias:
            _deprecations.log(
                key, logging.WARNING, "%s is deprecated: use %s instead", key, spec.key
            )
            if layer.values.get(spec.key) is not None:
                continue  # the current name wins over the deprecated one
        try:
            values[spec.field_name] = spec.convert(raw, text=layer.text)
        except InvalidValueError as error:
            problems.add(spec.key, spec.problem(layer.source, raw, error))
    return values


def find_option(key: str) -> Optional[OptionSpec]:
    """The option whose key, or deprecated alias, is ``key``; None when there is none."""
    return _BY_KEY.get(key) or _BY_ALIAS.get(key)


def _unknown_key(key: object, source: str) -> str:
    if not isinstance(key, str):
        return f"unknown option {key!r} ({source}); option names are strings such as 'LOG_BODY'"
    close = difflib.get_close_matches(key.upper(), list(_BY_KEY), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown option {key!r} ({source}){hint}"


def _check_required(values: Mapping[str, Any], problems: _Problems) -> None:
    if values.get("enabled", True) is False:
        return  # a pass-through needs nothing
    for spec in OPTIONS:
        if not spec.required or spec.key in problems.keys:
            continue
        value = values.get(spec.field_name, spec.default)
        if value is None or (isinstance(value, str) and not value.strip()):
            where = f" or the {spec.env_var} environment variable" if spec.env_var else ""
            problems.add(spec.key, f"{spec.key} is required: set it in the settings{where}")


# The kinds the annotation alone decides; the others must be named with option(kind=...).
_KIND_OF_ANNOTATION: Dict[object, OptionKind] = {
    bool: OptionKind.BOOL,
    int: OptionKind.INT,
    float: OptionKind.FLOAT,
    str: OptionKind.STR,
    Optional[str]: OptionKind.OPTIONAL_STR,
}
_ANNOTATION_OF_KIND: Dict[OptionKind, object] = {
    OptionKind.URL: str,
    OptionKind.HEADER: str,
    OptionKind.HOOK: Optional[Hook],
    OptionKind.STR_LIST: Tuple[str, ...],
    OptionKind.HEADER_LIST: Tuple[str, ...],
    OptionKind.NETWORK_LIST: Tuple[IPNetwork, ...],
}


def _collect_options() -> Tuple[OptionSpec, ...]:
    hints = typing.get_type_hints(Settings)
    specs = []
    for settings_field in dataclasses.fields(Settings):
        meta: _OptionMeta = settings_field.metadata[_META]
        annotation = hints[settings_field.name]
        kind = meta.kind or _KIND_OF_ANNOTATION.get(annotation)
        if kind is None or (meta.kind is not None and _ANNOTATION_OF_KIND[kind] != annotation):
            raise TypeError(f"Settings.{settings_field.name}: kind does not fit {annotation}")
        key = settings_field.name.upper()
        specs.append(
            OptionSpec(
                key=key,
                field_name=settings_field.name,
                kind=kind,
                default=settings_field.default,
                description=meta.description,
                env_var=ENV_PREFIX + key if meta.env else None,
                aliases=meta.aliases,
                bounds=meta.bounds,
                required=meta.required,
                secret=meta.secret,
            )
        )
    return tuple(specs)


OPTIONS: Tuple[OptionSpec, ...] = _collect_options()
_BY_KEY: Dict[str, OptionSpec] = {spec.key: spec for spec in OPTIONS}
_BY_ALIAS: Dict[str, OptionSpec] = {alias: spec for spec in OPTIONS for alias in spec.aliases}
