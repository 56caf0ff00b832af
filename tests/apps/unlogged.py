"""A wrapped WSGI app in a process that configures no logging at all (settings from MOESIF_*
environment variables), as many deployments run: what the package has to say must still be
seen."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from moesif_integrations import MoesifMiddleware


def _plain(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


app = MoesifMiddleware(_plain)
