"""The JSON library of the whole package, decided once: orjson where it is installed (a
dependency on CPython), else the standard library's ``json`` alone (PyPy, platforms without a
wheel).

Callers read ``json_backend.orjson`` when they run, never bind it at import, so setting this
one attribute to None switches every user to the standard library (the tests run both ways).
"""

from __future__ import annotations

try:
    import orjson
except ImportError:  # pragma: no cover - PyPy and platforms without a wheel
    orjson = None  # type: ignore[assignment]

__all__ = ["orjson"]
