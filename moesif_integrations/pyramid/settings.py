"""Reads the ``moesif.*`` keys of a Pyramid app's settings into the one schema.

Values may be text (an ``.ini`` file) or Python objects (``Configurator(settings={...})``).
Booleans take Pyramid's words (``t``/``f`` and ``y``/``n`` as well as the schema's, but a typo is
an error, not false); callables are dotted names resolved the Pyramid way (a leading dot means
relative to the app's package); lists are one item a line or comma-separated; everything else is
the schema's.
"""

from __future__ import annotations

import difflib
from typing import Any, Dict, List, Mapping

from pyramid.exceptions import (  # type: ignore[import-untyped]
    ConfigurationError as PyramidConfigurationError,
)
from pyramid.path import DottedNameResolver  # type: ignore[import-untyped]
from pyramid.settings import falsey, truthy  # type: ignore[import-untyped]

from ..core import (
    OPTIONS,
    ConfigurationError,
    OptionKind,
    OptionSpec,
    Settings,
    SettingsLayer,
    find_option,
)

__all__ = ["SETTINGS_PREFIX", "SETTINGS_SOURCE", "MoesifConfigurationError", "load_settings"]

SETTINGS_PREFIX = "moesif."
SETTINGS_SOURCE = "Pyramid settings"

_SETTING_NAMES = [
    SETTINGS_PREFIX + key.lower() for spec in OPTIONS for key in (spec.key, *spec.aliases)
]


class MoesifConfigurationError(PyramidConfigurationError, ConfigurationError):  # type: ignore[misc]
    """Bad ``moesif.*`` settings: Pyramid's ConfigurationError and the core's, so that either
    ``except`` clause catches it. One line per problem."""


def load_settings(config: Any) -> Settings:
    """The validated settings of ``config`` (a Configurator): defaults < ``MOESIF_<KEY>``
    environment variables < ``moesif.<key>`` settings. Raises MoesifConfigurationError."""
    problems: List[str] = []
    values: Dict[str, Any] = {}
    # Inside an include, config.package is this package; relative names are the app's.
    resolver = DottedNameResolver(config.root_package)
    app_settings: Mapping[str, Any] = config.get_settings() or {}
    for name, raw in app_settings.items():
        if not isinstance(name, str) or not name.startswith(SETTINGS_PREFIX):
            continue
        key = name[len(SETTINGS_PREFIX) :].upper()
        spec = find_option(key)
        if spec is None:
            close = difflib.get_close_matches(name.lower(), _SETTING_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"unknown option {name!r} ({SETTINGS_SOURCE}){hint}")
            continue
        try:
            values[key] = _pyramid_value(resolver, spec, raw)
        except Exception as error:  # importing user code can raise anything
            problems.append(
                f"{spec.key} ({SETTINGS_SOURCE} {name}): cannot import {raw!r} ({error}); "
                "expected the dotted name of a callable, such as package.module:function"
            )
    try:
        settings = Settings.resolve(None, {}, SettingsLayer(SETTINGS_SOURCE, values, text=True))
    except ConfigurationError as error:
        raise MoesifConfigurationError(problems + list(error.problems)) from None
    if problems:
        raise MoesifConfigurationError(problems)
    return settings


def _pyramid_value(resolver: Any, spec: OptionSpec, raw: Any) -> Any:
    """What Pyramid would make of a text value; anything else goes to the schema as it is."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if spec.kind is OptionKind.BOOL:
        word = text.lower()
        if word in truthy:
            return True
        if word in falsey:
            return False
        return raw  # the schema says what is expected; asbool would quietly read it as false
    if spec.kind is OptionKind.HOOK:
        return resolver.maybe_resolve(text) if text else None
    return raw
