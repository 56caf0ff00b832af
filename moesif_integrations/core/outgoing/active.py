"""Whose options apply to an outgoing call: the integration serving the incoming request in
progress, else the process-wide default.

One context variable covers both protocols: a WSGI server runs each request on its own thread
(or greenlet), and every thread starts with its own context, so the variable is per thread
there; under ASGI each request is a task with its own copy of the context. The incoming capture
enters the variable when an exchange begins and leaves it when the exchange ends.

The process-wide default is the integration that most recently turned outgoing capture on and
still has it on; it covers calls made outside any request (scripts, background jobs).
"""

from __future__ import annotations

import threading
from contextvars import ContextVar, Token
from typing import Any, List, NamedTuple, Optional


class Active(NamedTuple):
    """The recorder whose options apply, and the incoming request's transaction id (None when
    the call happens outside a request)."""

    recorder: Any  # recorder.OutgoingRecorder; Any keeps this module free of imports
    incoming_transaction_id: Optional[str]


_active: ContextVar[Optional[Active]] = ContextVar("moesif_outgoing_active", default=None)
_defaults: List[Any] = []
_defaults_lock = threading.Lock()


def enter(recorder: Any, incoming_transaction_id: Optional[str]) -> Token[Optional[Active]]:
    """Makes ``recorder`` the active one in this context, for the request in progress."""
    return _active.set(Active(recorder, incoming_transaction_id))


def leave(token: Token[Optional[Active]]) -> None:
    """Undoes ``enter``; nothing when the request ends in another context (its own context is
    then gone with it) or was left already."""
    try:
        _active.reset(token)
    except (ValueError, RuntimeError):
        pass


def current() -> Optional[Active]:
    """What applies to a call made now: the request's integration, else the default."""
    active = _active.get()
    if active is not None:
        return active
    defaults = _defaults
    return Active(defaults[-1], None) if defaults else None


def add_default(recorder: Any) -> None:
    with _defaults_lock:
        if recorder in _defaults:
            _defaults.remove(recorder)
        _defaults.append(recorder)


def remove_default(recorder: Any) -> bool:
    """Forgets ``recorder``; True when no default is left."""
    with _defaults_lock:
        if recorder in _defaults:
            _defaults.remove(recorder)
        return not _defaults


def clear_defaults() -> List[Any]:
    with _defaults_lock:
        removed = list(_defaults)
        _defaults.clear()
        return removed


class _Paused(threading.local):
    """Set on a thread while the capture itself runs user hooks: a call a hook makes passes
    through uncaptured, so a hook can never capture itself without end."""

    on = False


paused = _Paused()
