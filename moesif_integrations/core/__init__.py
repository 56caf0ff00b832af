"""The core's public surface: everything an adapter (or the generic middleware) may use.

Adapters import from ``moesif_integrations.core`` only, never from its submodules (checked by
``tests/test_structure.py``). The rooms below follow one exchange top-down:

- ``config/``   the option schema, parsing and validation (``Settings``)
- ``capture/``  the WSGI and ASGI request paths, body tees, transaction ids (``Exchange``)
- ``decide/``   what happens before the app runs: sampling and governance rules (``Decisions``)
- ``record.py`` the one type capture hands on (``ExchangeRecord``)
- ``pipeline.py`` the facade an integration owns: submit, queue, identify, flush (``Pipeline``)
- ``wire/``     record to event: bodies, headers, identity, masking, JSON
- ``delivery/`` bounded queue, sender threads, the delivery process, the HTTP transport
"""

from .capture.asgi import (
    AsyncReadTee,
    AsyncStreamTee,
    capture_request_body,
    exchange_from_scope,
    receive_ahead,
    scope_client,
    scope_path,
)
from .capture.exchange import SAMPLED_OUT, Capture, Exchange
from .capture.ids import transaction_id_for
from .capture.tees import ReadTee, ResponseIterator, SizedResponseIterator
from .capture.wsgi import (
    EXCHANGE_ENVIRON_KEY,
    TRANSACTION_HEADER,
    StartResponse,
    WSGIApp,
    WsgiCapture,
    WsgiExchange,
)
from .config.schema import (
    OPTIONS,
    ConfigurationError,
    OptionKind,
    OptionSpec,
    Settings,
    SettingsLayer,
    find_option,
)
from .config.values import InvalidValueError
from .integration import IntegrationMethods
from .logs import LogOnce, logger
from .pipeline import Pipeline

__all__ = [
    "EXCHANGE_ENVIRON_KEY",
    "SAMPLED_OUT",
    "OPTIONS",
    "TRANSACTION_HEADER",
    "AsyncReadTee",
    "AsyncStreamTee",
    "Capture",
    "ConfigurationError",
    "Exchange",
    "IntegrationMethods",
    "InvalidValueError",
    "LogOnce",
    "OptionKind",
    "OptionSpec",
    "Pipeline",
    "ReadTee",
    "ResponseIterator",
    "Settings",
    "SettingsLayer",
    "SizedResponseIterator",
    "StartResponse",
    "WSGIApp",
    "WsgiCapture",
    "WsgiExchange",
    "capture_request_body",
    "exchange_from_scope",
    "find_option",
    "logger",
    "receive_ahead",
    "scope_client",
    "scope_path",
    "transaction_id_for",
]
