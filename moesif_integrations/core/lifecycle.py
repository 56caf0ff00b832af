"""The process lifecycle of everything that owns threads, queues or locks, in one place.

- In a child of ``fork()`` (gunicorn ``--preload``, uWSGI) the parent's threads do not exist and
  a lock another thread held at that instant stays locked for ever: each registered object
  gets fresh state there (``after_fork_in_child``).
- At exit, every open delivery queue (``delivery/queue.py``, with its sender threads) is shut
  down within ONE budget, the largest SHUTDOWN_TIMEOUT among them, so exit never takes longer
  than that however many integrations the process has. Events go first (they carry the API
  calls), profile updates get what is left.
- SIGTERM (``docker stop``, Kubernetes, ``kill``) ends a process without at-exit hooks when
  nothing handles it. Where nothing but the default action is set for it (waitress, a plain
  Python server), ``flush_on_sigterm`` sets a handler that runs the same exit flush within the
  same budget, then lets SIGTERM end the process as it would have. A handler the app or the
  server set (gunicorn, uvicorn) is never replaced; theirs run the at-exit hooks already.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import weakref
from types import FrameType
from typing import Any, List, Optional

# The package logger, by name: logs.py registers with this module, so it cannot be imported.
logger = logging.getLogger("moesif_integrations")

# Objects with after_fork_in_child().
_fork_aware: weakref.WeakSet[Any] = weakref.WeakSet()
# Objects with shutdown(timeout), a ``closed`` attribute, ``shutdown_timeout`` and
# ``exit_order`` (lower first).
_exit_flushed: weakref.WeakSet[Any] = weakref.WeakSet()


def reset_in_forked_child(owner: Any) -> None:
    """``owner.after_fork_in_child()`` will run in every child forked from now on."""
    _fork_aware.add(owner)


def shut_down_at_exit(owner: Any) -> None:
    """``owner.shutdown(budget)`` will run at exit, within the shared budget."""
    _exit_flushed.add(owner)


def flush_all(timeout: float) -> bool:
    """Delivers what every open sender of the process holds (every live integration's events
    first, then its profiles) within ONE budget of ``timeout`` seconds; True when all emptied.
    For tests that assert on what reached a collector."""
    owners: List[Any] = sorted(
        (owner for owner in list(_exit_flushed) if not owner.closed),
        key=lambda owner: owner.exit_order,
    )
    deadline = time.monotonic() + timeout
    delivered = True
    for owner in owners:
        budget = max(0.0, deadline - time.monotonic())
        delivered = bool(owner.flush(budget)) and delivered
    return delivered


def flush_on_sigterm() -> bool:
    """Sets the SIGTERM handler described above when nothing but the default action is set and
    this is the main thread (Python lets only the main thread set handlers); True when the
    handler is (or already was) in place."""
    if not hasattr(signal, "SIGTERM"):
        return False
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is _on_sigterm:
            return True
        if current is not signal.SIG_DFL:
            return False  # the app's, the server's, or ignored: theirs to keep
        if threading.current_thread() is not threading.main_thread():
            logger.info(
                "SIGTERM: the integration was made outside the main thread, so no handler was "
                "set; events still queued when SIGTERM ends the process are lost (flush or "
                "shut down the integration from your own handler)"
            )
            return False
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # an embedded interpreter that refuses signals
        return False
    return True


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    """Flushes within the exit budget, then ends the process by SIGTERM's default action.

    The flush runs on its own thread, joined for the budget: the interrupted main thread may hold
    a lock the flush needs (a request served on the main thread), and the process must end
    regardless.
    """
    owners = [owner for owner in list(_exit_flushed) if not owner.closed]
    if owners:
        budget = max(owner.shutdown_timeout for owner in owners)
        flushing = threading.Thread(target=_shut_down_all, name="moesif-sigterm", daemon=True)
        flushing.start()
        # One second beyond the budget: each owner's shutdown keeps within it already.
        flushing.join(budget + 1.0)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _after_fork_in_child() -> None:
    for owner in list(_fork_aware):
        owner.after_fork_in_child()


def _shut_down_all() -> None:
    owners: List[Any] = sorted(
        (owner for owner in list(_exit_flushed) if not owner.closed),
        key=lambda owner: owner.exit_order,
    )
    if not owners:
        return
    deadline = time.monotonic() + max(owner.shutdown_timeout for owner in owners)
    for owner in owners:
        budget = max(0.0, min(owner.shutdown_timeout, deadline - time.monotonic()))
        try:
            owner.shutdown(budget)
        except Exception:
            logger.warning("at-exit flush failed", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_shut_down_all)
