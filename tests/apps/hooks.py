"""Settings hooks named in ``MOESIF_*`` environment variables by the real-server tests.

They misbehave only when a request asks for it, so one server can serve good and bad cases.
"""

from __future__ import annotations

import os
from typing import Any, Dict

# A request carrying this header makes the identification hooks raise.
RAISE_HEADER = "HTTP_X_TEST_HOOKS_RAISE"
# MASK_EVENT_MODEL raises for events of requests to paths containing this.
MASK_FAILS_ON = "/mask-fails"


def pid_metadata(app: Any, environ: Dict[str, Any]) -> Dict[str, Any]:
    """GET_METADATA: which worker process served the request."""
    if RAISE_HEADER in environ:
        raise RuntimeError("GET_METADATA failed on purpose")
    return {"pid": os.getpid()}


def user_from_header(app: Any, environ: Dict[str, Any], response_headers: Any) -> Any:
    """IDENTIFY_USER: the X-Test-User header."""
    if RAISE_HEADER in environ:
        raise RuntimeError("IDENTIFY_USER failed on purpose")
    return environ.get("HTTP_X_TEST_USER")


def company_from_header(app: Any, environ: Dict[str, Any], response_headers: Any) -> Any:
    """IDENTIFY_COMPANY: the X-Test-Company header."""
    if RAISE_HEADER in environ:
        raise RuntimeError("IDENTIFY_COMPANY failed on purpose")
    return environ.get("HTTP_X_TEST_COMPANY")


def skip_when_asked(app: Any, environ: Dict[str, Any]) -> bool:
    """SKIP: never skips; raises when asked to (the request must still be recorded)."""
    if RAISE_HEADER in environ:
        raise RuntimeError("SKIP failed on purpose")
    return False


def mask_fails_on_some_paths(event_model: Any) -> Any:
    """MASK_EVENT_MODEL that raises for some paths: those events must be dropped, not sent."""
    if MASK_FAILS_ON in event_model.request.uri:
        raise RuntimeError("MASK_EVENT_MODEL failed on purpose")
    return event_model
